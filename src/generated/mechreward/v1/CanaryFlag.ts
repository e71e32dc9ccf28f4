// Original file: proto/mechreward/v1/reward.proto


export interface CanaryFlag {
  'name'?: (string);
  'reason'?: (string);
  'value'?: (number | string);
}

export interface CanaryFlag__Output {
  'name': (string);
  'reason': (string);
  'value': (number);
}
