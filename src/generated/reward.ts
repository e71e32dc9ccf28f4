import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { Baseline as _mechreward_v1_Baseline, Baseline__Output as _mechreward_v1_Baseline__Output } from './mechreward/v1/Baseline.js';
import type { CanaryFlag as _mechreward_v1_CanaryFlag, CanaryFlag__Output as _mechreward_v1_CanaryFlag__Output } from './mechreward/v1/CanaryFlag.js';
import type { FlaggedRollout as _mechreward_v1_FlaggedRollout, FlaggedRollout__Output as _mechreward_v1_FlaggedRollout__Output } from './mechreward/v1/FlaggedRollout.js';
import type { GetInfoRequest as _mechreward_v1_GetInfoRequest, GetInfoRequest__Output as _mechreward_v1_GetInfoRequest__Output } from './mechreward/v1/GetInfoRequest.js';
import type { GetInfoResponse as _mechreward_v1_GetInfoResponse, GetInfoResponse__Output as _mechreward_v1_GetInfoResponse__Output } from './mechreward/v1/GetInfoResponse.js';
import type { GetRunRequest as _mechreward_v1_GetRunRequest, GetRunRequest__Output as _mechreward_v1_GetRunRequest__Output } from './mechreward/v1/GetRunRequest.js';
import type { Interval as _mechreward_v1_Interval, Interval__Output as _mechreward_v1_Interval__Output } from './mechreward/v1/Interval.js';
import type { ListPacksRequest as _mechreward_v1_ListPacksRequest, ListPacksRequest__Output as _mechreward_v1_ListPacksRequest__Output } from './mechreward/v1/ListPacksRequest.js';
import type { ListPacksResponse as _mechreward_v1_ListPacksResponse, ListPacksResponse__Output as _mechreward_v1_ListPacksResponse__Output } from './mechreward/v1/ListPacksResponse.js';
import type { ListRunsRequest as _mechreward_v1_ListRunsRequest, ListRunsRequest__Output as _mechreward_v1_ListRunsRequest__Output } from './mechreward/v1/ListRunsRequest.js';
import type { ListRunsResponse as _mechreward_v1_ListRunsResponse, ListRunsResponse__Output as _mechreward_v1_ListRunsResponse__Output } from './mechreward/v1/ListRunsResponse.js';
import type { PackInfo as _mechreward_v1_PackInfo, PackInfo__Output as _mechreward_v1_PackInfo__Output } from './mechreward/v1/PackInfo.js';
import type { RegisterSharedMemoryRequest as _mechreward_v1_RegisterSharedMemoryRequest, RegisterSharedMemoryRequest__Output as _mechreward_v1_RegisterSharedMemoryRequest__Output } from './mechreward/v1/RegisterSharedMemoryRequest.js';
import type { RegisterSharedMemoryResponse as _mechreward_v1_RegisterSharedMemoryResponse, RegisterSharedMemoryResponse__Output as _mechreward_v1_RegisterSharedMemoryResponse__Output } from './mechreward/v1/RegisterSharedMemoryResponse.js';
import type { RewardServiceClient as _mechreward_v1_RewardServiceClient, RewardServiceDefinition as _mechreward_v1_RewardServiceDefinition } from './mechreward/v1/RewardService.js';
import type { RunDetail as _mechreward_v1_RunDetail, RunDetail__Output as _mechreward_v1_RunDetail__Output } from './mechreward/v1/RunDetail.js';
import type { RunPoint as _mechreward_v1_RunPoint, RunPoint__Output as _mechreward_v1_RunPoint__Output } from './mechreward/v1/RunPoint.js';
import type { RunSummary as _mechreward_v1_RunSummary, RunSummary__Output as _mechreward_v1_RunSummary__Output } from './mechreward/v1/RunSummary.js';
import type { ScoreRequest as _mechreward_v1_ScoreRequest, ScoreRequest__Output as _mechreward_v1_ScoreRequest__Output } from './mechreward/v1/ScoreRequest.js';
import type { ScoreResponse as _mechreward_v1_ScoreResponse, ScoreResponse__Output as _mechreward_v1_ScoreResponse__Output } from './mechreward/v1/ScoreResponse.js';
import type { Sequence as _mechreward_v1_Sequence, Sequence__Output as _mechreward_v1_Sequence__Output } from './mechreward/v1/Sequence.js';
import type { SequenceResult as _mechreward_v1_SequenceResult, SequenceResult__Output as _mechreward_v1_SequenceResult__Output } from './mechreward/v1/SequenceResult.js';
import type { SharedMemoryRef as _mechreward_v1_SharedMemoryRef, SharedMemoryRef__Output as _mechreward_v1_SharedMemoryRef__Output } from './mechreward/v1/SharedMemoryRef.js';
import type { UnregisterSharedMemoryRequest as _mechreward_v1_UnregisterSharedMemoryRequest, UnregisterSharedMemoryRequest__Output as _mechreward_v1_UnregisterSharedMemoryRequest__Output } from './mechreward/v1/UnregisterSharedMemoryRequest.js';
import type { UnregisterSharedMemoryResponse as _mechreward_v1_UnregisterSharedMemoryResponse, UnregisterSharedMemoryResponse__Output as _mechreward_v1_UnregisterSharedMemoryResponse__Output } from './mechreward/v1/UnregisterSharedMemoryResponse.js';
import type { ValidationSummary as _mechreward_v1_ValidationSummary, ValidationSummary__Output as _mechreward_v1_ValidationSummary__Output } from './mechreward/v1/ValidationSummary.js';
import type { VerifierStats as _mechreward_v1_VerifierStats, VerifierStats__Output as _mechreward_v1_VerifierStats__Output } from './mechreward/v1/VerifierStats.js';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  mechreward: {
    v1: {
      Baseline: MessageTypeDefinition<_mechreward_v1_Baseline, _mechreward_v1_Baseline__Output>
      CanaryFlag: MessageTypeDefinition<_mechreward_v1_CanaryFlag, _mechreward_v1_CanaryFlag__Output>
      DType: EnumTypeDefinition
      FlaggedRollout: MessageTypeDefinition<_mechreward_v1_FlaggedRollout, _mechreward_v1_FlaggedRollout__Output>
      GetInfoRequest: MessageTypeDefinition<_mechreward_v1_GetInfoRequest, _mechreward_v1_GetInfoRequest__Output>
      GetInfoResponse: MessageTypeDefinition<_mechreward_v1_GetInfoResponse, _mechreward_v1_GetInfoResponse__Output>
      GetRunRequest: MessageTypeDefinition<_mechreward_v1_GetRunRequest, _mechreward_v1_GetRunRequest__Output>
      Interval: MessageTypeDefinition<_mechreward_v1_Interval, _mechreward_v1_Interval__Output>
      ListPacksRequest: MessageTypeDefinition<_mechreward_v1_ListPacksRequest, _mechreward_v1_ListPacksRequest__Output>
      ListPacksResponse: MessageTypeDefinition<_mechreward_v1_ListPacksResponse, _mechreward_v1_ListPacksResponse__Output>
      ListRunsRequest: MessageTypeDefinition<_mechreward_v1_ListRunsRequest, _mechreward_v1_ListRunsRequest__Output>
      ListRunsResponse: MessageTypeDefinition<_mechreward_v1_ListRunsResponse, _mechreward_v1_ListRunsResponse__Output>
      PackInfo: MessageTypeDefinition<_mechreward_v1_PackInfo, _mechreward_v1_PackInfo__Output>
      RegisterSharedMemoryRequest: MessageTypeDefinition<_mechreward_v1_RegisterSharedMemoryRequest, _mechreward_v1_RegisterSharedMemoryRequest__Output>
      RegisterSharedMemoryResponse: MessageTypeDefinition<_mechreward_v1_RegisterSharedMemoryResponse, _mechreward_v1_RegisterSharedMemoryResponse__Output>
      RewardService: SubtypeConstructor<typeof grpc.Client, _mechreward_v1_RewardServiceClient> & { service: _mechreward_v1_RewardServiceDefinition }
      RunDetail: MessageTypeDefinition<_mechreward_v1_RunDetail, _mechreward_v1_RunDetail__Output>
      RunPoint: MessageTypeDefinition<_mechreward_v1_RunPoint, _mechreward_v1_RunPoint__Output>
      RunSummary: MessageTypeDefinition<_mechreward_v1_RunSummary, _mechreward_v1_RunSummary__Output>
      ScoreRequest: MessageTypeDefinition<_mechreward_v1_ScoreRequest, _mechreward_v1_ScoreRequest__Output>
      ScoreResponse: MessageTypeDefinition<_mechreward_v1_ScoreResponse, _mechreward_v1_ScoreResponse__Output>
      Sequence: MessageTypeDefinition<_mechreward_v1_Sequence, _mechreward_v1_Sequence__Output>
      SequenceResult: MessageTypeDefinition<_mechreward_v1_SequenceResult, _mechreward_v1_SequenceResult__Output>
      SharedMemoryRef: MessageTypeDefinition<_mechreward_v1_SharedMemoryRef, _mechreward_v1_SharedMemoryRef__Output>
      UnregisterSharedMemoryRequest: MessageTypeDefinition<_mechreward_v1_UnregisterSharedMemoryRequest, _mechreward_v1_UnregisterSharedMemoryRequest__Output>
      UnregisterSharedMemoryResponse: MessageTypeDefinition<_mechreward_v1_UnregisterSharedMemoryResponse, _mechreward_v1_UnregisterSharedMemoryResponse__Output>
      ValidationSummary: MessageTypeDefinition<_mechreward_v1_ValidationSummary, _mechreward_v1_ValidationSummary__Output>
      VerifierStats: MessageTypeDefinition<_mechreward_v1_VerifierStats, _mechreward_v1_VerifierStats__Output>
    }
  }
}

