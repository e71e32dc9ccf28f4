// Original file: proto/mechreward/v1/reward.proto


export interface Interval {
  'lo'?: (number | string);
  'hi'?: (number | string);
}

export interface Interval__Output {
  'lo': (number);
  'hi': (number);
}
