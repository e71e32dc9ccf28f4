// Original file: proto/mechreward/v1/reward.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { GetInfoRequest as _mechreward_v1_GetInfoRequest, GetInfoRequest__Output as _mechreward_v1_GetInfoRequest__Output } from '../../mechreward/v1/GetInfoRequest.js';
import type { GetInfoResponse as _mechreward_v1_GetInfoResponse, GetInfoResponse__Output as _mechreward_v1_GetInfoResponse__Output } from '../../mechreward/v1/GetInfoResponse.js';
import type { GetRunRequest as _mechreward_v1_GetRunRequest, GetRunRequest__Output as _mechreward_v1_GetRunRequest__Output } from '../../mechreward/v1/GetRunRequest.js';
import type { ListPacksRequest as _mechreward_v1_ListPacksRequest, ListPacksRequest__Output as _mechreward_v1_ListPacksRequest__Output } from '../../mechreward/v1/ListPacksRequest.js';
import type { ListPacksResponse as _mechreward_v1_ListPacksResponse, ListPacksResponse__Output as _mechreward_v1_ListPacksResponse__Output } from '../../mechreward/v1/ListPacksResponse.js';
import type { ListRunsRequest as _mechreward_v1_ListRunsRequest, ListRunsRequest__Output as _mechreward_v1_ListRunsRequest__Output } from '../../mechreward/v1/ListRunsRequest.js';
import type { ListRunsResponse as _mechreward_v1_ListRunsResponse, ListRunsResponse__Output as _mechreward_v1_ListRunsResponse__Output } from '../../mechreward/v1/ListRunsResponse.js';
import type { RegisterSharedMemoryRequest as _mechreward_v1_RegisterSharedMemoryRequest, RegisterSharedMemoryRequest__Output as _mechreward_v1_RegisterSharedMemoryRequest__Output } from '../../mechreward/v1/RegisterSharedMemoryRequest.js';
import type { RegisterSharedMemoryResponse as _mechreward_v1_RegisterSharedMemoryResponse, RegisterSharedMemoryResponse__Output as _mechreward_v1_RegisterSharedMemoryResponse__Output } from '../../mechreward/v1/RegisterSharedMemoryResponse.js';
import type { RunDetail as _mechreward_v1_RunDetail, RunDetail__Output as _mechreward_v1_RunDetail__Output } from '../../mechreward/v1/RunDetail.js';
import type { ScoreRequest as _mechreward_v1_ScoreRequest, ScoreRequest__Output as _mechreward_v1_ScoreRequest__Output } from '../../mechreward/v1/ScoreRequest.js';
import type { ScoreResponse as _mechreward_v1_ScoreResponse, ScoreResponse__Output as _mechreward_v1_ScoreResponse__Output } from '../../mechreward/v1/ScoreResponse.js';
import type { UnregisterSharedMemoryRequest as _mechreward_v1_UnregisterSharedMemoryRequest, UnregisterSharedMemoryRequest__Output as _mechreward_v1_UnregisterSharedMemoryRequest__Output } from '../../mechreward/v1/UnregisterSharedMemoryRequest.js';
import type { UnregisterSharedMemoryResponse as _mechreward_v1_UnregisterSharedMemoryResponse, UnregisterSharedMemoryResponse__Output as _mechreward_v1_UnregisterSharedMemoryResponse__Output } from '../../mechreward/v1/UnregisterSharedMemoryResponse.js';

export interface RewardServiceClient extends grpc.Client {
  GetInfo(argument: _mechreward_v1_GetInfoRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_GetInfoResponse__Output>): grpc.ClientUnaryCall;
  GetInfo(argument: _mechreward_v1_GetInfoRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_mechreward_v1_GetInfoResponse__Output>): grpc.ClientUnaryCall;
  GetInfo(argument: _mechreward_v1_GetInfoRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_GetInfoResponse__Output>): grpc.ClientUnaryCall;
  GetInfo(argument: _mechreward_v1_GetInfoRequest, callback: grpc.requestCallback<_mechreward_v1_GetInfoResponse__Output>): grpc.ClientUnaryCall;
  getInfo(argument: _mechreward_v1_GetInfoRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_GetInfoResponse__Output>): grpc.ClientUnaryCall;
  getInfo(argument: _mechreward_v1_GetInfoRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_mechreward_v1_GetInfoResponse__Output>): grpc.ClientUnaryCall;
  getInfo(argument: _mechreward_v1_GetInfoRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_GetInfoResponse__Output>): grpc.ClientUnaryCall;
  getInfo(argument: _mechreward_v1_GetInfoRequest, callback: grpc.requestCallback<_mechreward_v1_GetInfoResponse__Output>): grpc.ClientUnaryCall;
  
  GetRun(argument: _mechreward_v1_GetRunRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_RunDetail__Output>): grpc.ClientUnaryCall;
  GetRun(argument: _mechreward_v1_GetRunRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_mechreward_v1_RunDetail__Output>): grpc.ClientUnaryCall;
  GetRun(argument: _mechreward_v1_GetRunRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_RunDetail__Output>): grpc.ClientUnaryCall;
  GetRun(argument: _mechreward_v1_GetRunRequest, callback: grpc.requestCallback<_mechreward_v1_RunDetail__Output>): grpc.ClientUnaryCall;
  getRun(argument: _mechreward_v1_GetRunRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_RunDetail__Output>): grpc.ClientUnaryCall;
  getRun(argument: _mechreward_v1_GetRunRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_mechreward_v1_RunDetail__Output>): grpc.ClientUnaryCall;
  getRun(argument: _mechreward_v1_GetRunRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_RunDetail__Output>): grpc.ClientUnaryCall;
  getRun(argument: _mechreward_v1_GetRunRequest, callback: grpc.requestCallback<_mechreward_v1_RunDetail__Output>): grpc.ClientUnaryCall;
  
  ListPacks(argument: _mechreward_v1_ListPacksRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_ListPacksResponse__Output>): grpc.ClientUnaryCall;
  ListPacks(argument: _mechreward_v1_ListPacksRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_mechreward_v1_ListPacksResponse__Output>): grpc.ClientUnaryCall;
  ListPacks(argument: _mechreward_v1_ListPacksRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_ListPacksResponse__Output>): grpc.ClientUnaryCall;
  ListPacks(argument: _mechreward_v1_ListPacksRequest, callback: grpc.requestCallback<_mechreward_v1_ListPacksResponse__Output>): grpc.ClientUnaryCall;
  listPacks(argument: _mechreward_v1_ListPacksRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_ListPacksResponse__Output>): grpc.ClientUnaryCall;
  listPacks(argument: _mechreward_v1_ListPacksRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_mechreward_v1_ListPacksResponse__Output>): grpc.ClientUnaryCall;
  listPacks(argument: _mechreward_v1_ListPacksRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_ListPacksResponse__Output>): grpc.ClientUnaryCall;
  listPacks(argument: _mechreward_v1_ListPacksRequest, callback: grpc.requestCallback<_mechreward_v1_ListPacksResponse__Output>): grpc.ClientUnaryCall;
  
  ListRuns(argument: _mechreward_v1_ListRunsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_ListRunsResponse__Output>): grpc.ClientUnaryCall;
  ListRuns(argument: _mechreward_v1_ListRunsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_mechreward_v1_ListRunsResponse__Output>): grpc.ClientUnaryCall;
  ListRuns(argument: _mechreward_v1_ListRunsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_ListRunsResponse__Output>): grpc.ClientUnaryCall;
  ListRuns(argument: _mechreward_v1_ListRunsRequest, callback: grpc.requestCallback<_mechreward_v1_ListRunsResponse__Output>): grpc.ClientUnaryCall;
  listRuns(argument: _mechreward_v1_ListRunsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_ListRunsResponse__Output>): grpc.ClientUnaryCall;
  listRuns(argument: _mechreward_v1_ListRunsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_mechreward_v1_ListRunsResponse__Output>): grpc.ClientUnaryCall;
  listRuns(argument: _mechreward_v1_ListRunsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_ListRunsResponse__Output>): grpc.ClientUnaryCall;
  listRuns(argument: _mechreward_v1_ListRunsRequest, callback: grpc.requestCallback<_mechreward_v1_ListRunsResponse__Output>): grpc.ClientUnaryCall;
  
  RegisterSharedMemory(argument: _mechreward_v1_RegisterSharedMemoryRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_RegisterSharedMemoryResponse__Output>): grpc.ClientUnaryCall;
  RegisterSharedMemory(argument: _mechreward_v1_RegisterSharedMemoryRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_mechreward_v1_RegisterSharedMemoryResponse__Output>): grpc.ClientUnaryCall;
  RegisterSharedMemory(argument: _mechreward_v1_RegisterSharedMemoryRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_RegisterSharedMemoryResponse__Output>): grpc.ClientUnaryCall;
  RegisterSharedMemory(argument: _mechreward_v1_RegisterSharedMemoryRequest, callback: grpc.requestCallback<_mechreward_v1_RegisterSharedMemoryResponse__Output>): grpc.ClientUnaryCall;
  registerSharedMemory(argument: _mechreward_v1_RegisterSharedMemoryRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_RegisterSharedMemoryResponse__Output>): grpc.ClientUnaryCall;
  registerSharedMemory(argument: _mechreward_v1_RegisterSharedMemoryRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_mechreward_v1_RegisterSharedMemoryResponse__Output>): grpc.ClientUnaryCall;
  registerSharedMemory(argument: _mechreward_v1_RegisterSharedMemoryRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_RegisterSharedMemoryResponse__Output>): grpc.ClientUnaryCall;
  registerSharedMemory(argument: _mechreward_v1_RegisterSharedMemoryRequest, callback: grpc.requestCallback<_mechreward_v1_RegisterSharedMemoryResponse__Output>): grpc.ClientUnaryCall;
  
  Score(argument: _mechreward_v1_ScoreRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_ScoreResponse__Output>): grpc.ClientUnaryCall;
  Score(argument: _mechreward_v1_ScoreRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_mechreward_v1_ScoreResponse__Output>): grpc.ClientUnaryCall;
  Score(argument: _mechreward_v1_ScoreRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_ScoreResponse__Output>): grpc.ClientUnaryCall;
  Score(argument: _mechreward_v1_ScoreRequest, callback: grpc.requestCallback<_mechreward_v1_ScoreResponse__Output>): grpc.ClientUnaryCall;
  score(argument: _mechreward_v1_ScoreRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_ScoreResponse__Output>): grpc.ClientUnaryCall;
  score(argument: _mechreward_v1_ScoreRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_mechreward_v1_ScoreResponse__Output>): grpc.ClientUnaryCall;
  score(argument: _mechreward_v1_ScoreRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_ScoreResponse__Output>): grpc.ClientUnaryCall;
  score(argument: _mechreward_v1_ScoreRequest, callback: grpc.requestCallback<_mechreward_v1_ScoreResponse__Output>): grpc.ClientUnaryCall;
  
  UnregisterSharedMemory(argument: _mechreward_v1_UnregisterSharedMemoryRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_UnregisterSharedMemoryResponse__Output>): grpc.ClientUnaryCall;
  UnregisterSharedMemory(argument: _mechreward_v1_UnregisterSharedMemoryRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_mechreward_v1_UnregisterSharedMemoryResponse__Output>): grpc.ClientUnaryCall;
  UnregisterSharedMemory(argument: _mechreward_v1_UnregisterSharedMemoryRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_UnregisterSharedMemoryResponse__Output>): grpc.ClientUnaryCall;
  UnregisterSharedMemory(argument: _mechreward_v1_UnregisterSharedMemoryRequest, callback: grpc.requestCallback<_mechreward_v1_UnregisterSharedMemoryResponse__Output>): grpc.ClientUnaryCall;
  unregisterSharedMemory(argument: _mechreward_v1_UnregisterSharedMemoryRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_UnregisterSharedMemoryResponse__Output>): grpc.ClientUnaryCall;
  unregisterSharedMemory(argument: _mechreward_v1_UnregisterSharedMemoryRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_mechreward_v1_UnregisterSharedMemoryResponse__Output>): grpc.ClientUnaryCall;
  unregisterSharedMemory(argument: _mechreward_v1_UnregisterSharedMemoryRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_mechreward_v1_UnregisterSharedMemoryResponse__Output>): grpc.ClientUnaryCall;
  unregisterSharedMemory(argument: _mechreward_v1_UnregisterSharedMemoryRequest, callback: grpc.requestCallback<_mechreward_v1_UnregisterSharedMemoryResponse__Output>): grpc.ClientUnaryCall;
  
}

export interface RewardServiceHandlers extends grpc.UntypedServiceImplementation {
  GetInfo: grpc.handleUnaryCall<_mechreward_v1_GetInfoRequest__Output, _mechreward_v1_GetInfoResponse>;
  
  GetRun: grpc.handleUnaryCall<_mechreward_v1_GetRunRequest__Output, _mechreward_v1_RunDetail>;
  
  ListPacks: grpc.handleUnaryCall<_mechreward_v1_ListPacksRequest__Output, _mechreward_v1_ListPacksResponse>;
  
  ListRuns: grpc.handleUnaryCall<_mechreward_v1_ListRunsRequest__Output, _mechreward_v1_ListRunsResponse>;
  
  RegisterSharedMemory: grpc.handleUnaryCall<_mechreward_v1_RegisterSharedMemoryRequest__Output, _mechreward_v1_RegisterSharedMemoryResponse>;
  
  Score: grpc.handleUnaryCall<_mechreward_v1_ScoreRequest__Output, _mechreward_v1_ScoreResponse>;
  
  UnregisterSharedMemory: grpc.handleUnaryCall<_mechreward_v1_UnregisterSharedMemoryRequest__Output, _mechreward_v1_UnregisterSharedMemoryResponse>;
  
}

export interface RewardServiceDefinition extends grpc.ServiceDefinition {
  GetInfo: MethodDefinition<_mechreward_v1_GetInfoRequest, _mechreward_v1_GetInfoResponse, _mechreward_v1_GetInfoRequest__Output, _mechreward_v1_GetInfoResponse__Output>
  GetRun: MethodDefinition<_mechreward_v1_GetRunRequest, _mechreward_v1_RunDetail, _mechreward_v1_GetRunRequest__Output, _mechreward_v1_RunDetail__Output>
  ListPacks: MethodDefinition<_mechreward_v1_ListPacksRequest, _mechreward_v1_ListPacksResponse, _mechreward_v1_ListPacksRequest__Output, _mechreward_v1_ListPacksResponse__Output>
  ListRuns: MethodDefinition<_mechreward_v1_ListRunsRequest, _mechreward_v1_ListRunsResponse, _mechreward_v1_ListRunsRequest__Output, _mechreward_v1_ListRunsResponse__Output>
  RegisterSharedMemory: MethodDefinition<_mechreward_v1_RegisterSharedMemoryRequest, _mechreward_v1_RegisterSharedMemoryResponse, _mechreward_v1_RegisterSharedMemoryRequest__Output, _mechreward_v1_RegisterSharedMemoryResponse__Output>
  Score: MethodDefinition<_mechreward_v1_ScoreRequest, _mechreward_v1_ScoreResponse, _mechreward_v1_ScoreRequest__Output, _mechreward_v1_ScoreResponse__Output>
  UnregisterSharedMemory: MethodDefinition<_mechreward_v1_UnregisterSharedMemoryRequest, _mechreward_v1_UnregisterSharedMemoryResponse, _mechreward_v1_UnregisterSharedMemoryRequest__Output, _mechreward_v1_UnregisterSharedMemoryResponse__Output>
}
