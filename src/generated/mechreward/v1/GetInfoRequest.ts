// Original file: proto/mechreward/v1/reward.proto


export interface GetInfoRequest {
}

export interface GetInfoRequest__Output {
}
