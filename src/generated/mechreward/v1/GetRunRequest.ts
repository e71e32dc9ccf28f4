// Original file: proto/mechreward/v1/reward.proto


export interface GetRunRequest {
  'run_id'?: (string);
}

export interface GetRunRequest__Output {
  'run_id': (string);
}
