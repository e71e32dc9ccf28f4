// Original file: proto/mechreward/v1/reward.proto


export interface ListPacksRequest {
}

export interface ListPacksRequest__Output {
}
