// Original file: proto/mechreward/v1/reward.proto


export interface UnregisterSharedMemoryRequest {
  'name'?: (string);
}

export interface UnregisterSharedMemoryRequest__Output {
  'name': (string);
}
