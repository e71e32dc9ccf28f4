// Original file: proto/mechreward/v1/reward.proto


export interface ListRunsRequest {
}

export interface ListRunsRequest__Output {
}
