// The cfg.json fields the SAE loader knows, per layout. A field in neither list fails loading with its name:
// a field we do not understand may change the encode, and a silently misread SAE gives wrong rewards with no
// error. docs/packs.md lists the same fields; keep the two together.

/** SAELens fields the loader reads (sae.ts decides what each does to the encode). */
export const SAELENS_READ_FIELDS: ReadonlySet<string> = new Set([
  'd_in',
  'd_sae',
  'd_out',
  'architecture',
  'k',
  'apply_b_dec_to_input',
  'normalize_activations',
  'rescale_acts_by_decoder_norm',
  'reshape_activations',
  'dtype',
  'metadata',
  'sae_lens_version',
  'sae_lens_training_version',
  // Before SAELens 6.0: hook_point was renamed hook_name, activation_fn_str activation_fn.
  'hook_name',
  'hook_point',
  'activation_fn',
  'activation_fn_str',
  'activation_fn_kwargs',
]);

/**
 * SAELens fields with no effect on the encode of a `[tokens, d_in]` row: where the SAE was trained and on
 * what (the language-model runner's fields, which pre-6.0 cfgs carry whole), the device, training-only
 * coefficients and schedules, and output-side hooks. SAELens itself drops every field that is not in the
 * architecture's config class (`filter_valid_dataclass_fields`), so none of these reaches its `encode()`.
 */
export const SAELENS_NO_EFFECT_FIELDS: ReadonlySet<string> = new Set([
  // where and how the activations were taken
  'device', 'model_name', 'model_class_name', 'hook_layer', 'hook_head_index', 'hook_point_layer',
  'hook_point_head_index', 'hook_name_out', 'hook_layer_out', 'hook_head_index_out', 'hf_hook_name',
  'hf_hook_name_out', 'model_from_pretrained_kwargs', 'prepend_bos', 'exclude_special_tokens',
  'neuronpedia_id', 'context_size', 'seqpos_slice', 'dataset_path', 'dataset_trust_remote_code',
  'is_dataset_tokenized', 'streaming', 'store_batch_size_prompts', 'n_batches_in_buffer', 'training_tokens',
  'train_batch_size_tokens', 'finetuning_tokens', 'cached_activations_path', 'use_cached_activations',
  'model_kwargs', 'run_name', 'wandb_project', 'wandb_entity', 'wandb_log_frequency', 'log_to_wandb',
  'eval_every_n_wandb_logs', 'n_checkpoints', 'checkpoint_path', 'verbose', 'seed', 'autocast',
  'autocast_lm', 'compile_llm', 'compile_sae', 'act_store_device', 'llm_compilation_mode',
  'sae_compilation_mode', 'n_eval_batches', 'eval_batch_size_prompts', 'dead_feature_window',
  'dead_feature_threshold', 'feature_sampling_window', 'resample_batches', 'dead_feature_estimation_method',
  'use_ghost_grads', 'sae_lens_description', 'tokens_per_buffer', 'disable_concat_sequences',
  'sequence_separator_token',
  // training only (TrainingSAEConfig subclasses and the old runner)
  'decoder_init_norm', 'l1_coefficient', 'lp_norm', 'l1_warm_up_steps', 'l0_coefficient',
  'l0_warm_up_steps', 'aux_loss_coefficient', 'use_sparse_activations', 'jumprelu_init_threshold',
  'jumprelu_bandwidth', 'jumprelu_sparsity_loss_mode', 'jumprelu_tanh_scale', 'jumprelu_ste_to_input',
  'pre_act_loss_coefficient', 'target_l0', 'topk_threshold_lr', 'lr', 'lr_scheduler_name',
  'lr_warm_up_steps', 'lr_end', 'lr_decay_steps', 'adam_beta1', 'adam_beta2', 'mse_loss_normalization',
  'scale_sparsity_penalty_by_decoder_norm', 'decoder_heuristic_init', 'decoder_heuristic_init_norm',
  'init_encoder_as_decoder_transpose', 'b_dec_init_method', 'expansion_factor', 'normalize_sae_decoder',
  'noise_scale', 'from_pretrained_path', 'apply_b_dec_to_input_during_training', 'd_head',
  // decode only: scales the code before W_dec, not the encode
  'finetuning_scaling_factor', 'finetuning_method',
]);

/** sparsify SparseCoderConfig fields the loader reads. */
export const SPARSIFY_READ_FIELDS: ReadonlySet<string> = new Set(['d_in', 'activation', 'k', 'num_latents', 'expansion_factor', 'transcode', 'skip_connection']);

/** sparsify fields with no effect on `SparseCoder.encode` (training: decoder normalisation, Multi-TopK loss). */
export const SPARSIFY_NO_EFFECT_FIELDS: ReadonlySet<string> = new Set(['normalize_decoder', 'multi_topk']);

/** The first field of `cfg` that is in neither set, or undefined. */
export function firstUnknownField(cfg: Record<string, unknown>, read: ReadonlySet<string>, noEffect: ReadonlySet<string>): string | undefined {
  return Object.keys(cfg).find((k) => !read.has(k) && !noEffect.has(k));
}
