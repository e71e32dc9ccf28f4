"""One GRPO run: trl.GRPOTrainer on a copy of the base model, outcome reward plus (R1, R2) a sidecar pack."""

from __future__ import annotations

import tempfile
import time

import settings
from data import outcome_reward, train_dataset


class StepClock:
    """A TrainerCallback (built lazily: transformers is imported by the caller) printing each step's time."""

    @staticmethod
    def make():
        from transformers import TrainerCallback

        class _Clock(TrainerCallback):
            def __init__(self):
                self.times: list[float] = []
                self._t = 0.0

            def on_step_begin(self, args, state, control, **kw):
                self._t = time.time()

            def on_step_end(self, args, state, control, **kw):
                self.times.append(time.time() - self._t)
                print(f"  [train] step {state.global_step}/{state.max_steps}  {self.times[-1]:.1f}s", flush=True)

        return _Clock()


def grpo_config(output_dir: str, with_pack: bool):
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=output_dir, use_cpu=True, bf16=False, gradient_checkpointing=False,
        per_device_train_batch_size=settings.PROMPTS_PER_STEP * settings.NUM_GENERATIONS,
        num_generations=settings.NUM_GENERATIONS, max_completion_length=settings.MAX_COMPLETION_TOKENS,
        temperature=settings.TEMPERATURE, learning_rate=settings.LEARNING_RATE, max_steps=settings.STEPS,
        multi_objective_aggregation=settings.AGGREGATION,
        reward_weights=[1.0, settings.PACK_COEF] if with_pack else [1.0],
        seed=settings.RUN_SEED, data_seed=settings.RUN_SEED, logging_steps=1, report_to="none",
        save_strategy="no", dataloader_num_workers=0, disable_tqdm=True,
    )


def run(policy, tokenizer, pack: str | None, target: str | None, run_id: str) -> dict:
    """Train ``policy`` in place; returns the run's record (steps, times, per-step logs)."""
    from trl import GRPOTrainer

    from mechreward_client.trl import MechReward

    reward_funcs = [outcome_reward]
    if pack is not None:
        # Captures layer `pack layer` of the policy being trained (the residuals the pack's rewards read) and
        # scores them on the sidecar; a sidecar failure raises instead of quietly dropping the pack term.
        reward_funcs.append(MechReward(pack, model=policy, tokenizer=tokenizer, target=target, on_error="raise",
                                       run_id=run_id, name="pack"))
    clock = StepClock.make()
    with tempfile.TemporaryDirectory(prefix="g2-") as out:
        trainer = GRPOTrainer(model=policy, reward_funcs=reward_funcs, args=grpo_config(out, pack is not None),
                              train_dataset=train_dataset(), processing_class=tokenizer, callbacks=[clock])
        start = time.time()
        trainer.train()
        seconds = time.time() - start
    logs = [entry for entry in trainer.state.log_history if "step" in entry and "train_runtime" not in entry]
    return {
        "pack": pack,
        "steps": trainer.state.global_step,
        "train_seconds": round(seconds, 1),
        "step_seconds": [round(t, 1) for t in clock.times],
        "log": logs,
    }
