"""Varied prompts whose greedy answers give the SAE text of the model's own beyond the arithmetic task.

Templates x topics, sampled without replacement with a fixed seed. A share of the templates is numeric or
step-by-step, so the SAE also sees the model reasoning about numbers in other words than the task's.
"""

from __future__ import annotations

import random

import config

TEMPLATES = (
    "Write a short story about {t}.",
    "Explain {t} to a ten-year-old.",
    "Give three interesting facts about {t}.",
    "Write a short poem about {t}.",
    "What are the advantages and disadvantages of {t}?",
    "Write a friendly email to a colleague about {t}.",
    "Describe {t} in one paragraph.",
    "What is the history of {t}?",
    "List five questions a student might ask about {t}.",
    "Write a word problem about {t} that uses numbers, then solve it step by step.",
    "How would you estimate how much {t} costs? Reason step by step.",
    "Summarize the most common misconceptions about {t}.",
)

TOPICS = (
    "the ocean", "volcanoes", "a lost cat", "the moon landing", "bread baking", "electric cars", "honeybees",
    "the Roman Empire", "photosynthesis", "chess", "a rainy afternoon", "the internet", "mountain climbing",
    "recycling", "a birthday party", "jazz music", "the human heart", "solar panels", "a library", "dinosaurs",
    "learning a new language", "coffee", "the stock market", "a train journey", "friendship", "snowflakes",
    "the printing press", "vaccines", "a small village", "robots", "gardening", "the water cycle",
    "a football match", "the pyramids", "time zones", "a busy kitchen", "owls", "electricity", "a thunderstorm",
    "saving money", "the Olympic games", "maps", "an old lighthouse", "penguins", "the alphabet", "bicycles",
    "a science fair", "clouds", "the solar system", "a job interview", "rainforests", "fractions",
    "a shopping list", "earthquakes", "the violin", "a museum", "tea ceremonies", "a school bus", "comets",
    "the speed of light", "a marathon", "origami", "a farmer's market", "submarines", "the desert",
    "prime numbers", "a haunted house", "wind turbines", "a city at night", "the calendar",
)


def prompts(seed: int = config.SEED + 1) -> list[str]:
    combos = [tpl.format(t=topic) for tpl in TEMPLATES for topic in TOPICS]
    rng = random.Random(seed)
    rng.shuffle(combos)
    return combos[: config.TEXT_PROMPTS]
