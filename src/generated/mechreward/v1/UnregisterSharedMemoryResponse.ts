// Original file: proto/mechreward/v1/reward.proto


export interface UnregisterSharedMemoryResponse {
}

export interface UnregisterSharedMemoryResponse__Output {
}
