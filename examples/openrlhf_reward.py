from mechreward_client.openrlhf import reward_func  # noqa: F401  OpenRLHF: --reward.remote_url examples/openrlhf_reward.py
