"""The tasks a comparison runs, and the model each one builds.

- ``mt``: translation; encoder-decoder models; BLEU/chrF.
- ``lm``: language modelling; decoder-only models; perplexity.
- ``sum``: abstractive summarization (short-input, headline style: a Debian package's long description ->
  its one-line synopsis); the *same encoder-decoder models as translation* (``model_task("sum") == "mt"``:
  the models know only "mt" and "lm", and a summarizer is a translation model from a long text to a short
  one); ROUGE-1/2/L. What differs from translation is the corpus, the MAC protocol (the budget file's
  ``protocol: sum:`` token counts), the token budget (``train: sum:``) and the cap on output length.
"""

from __future__ import annotations

from bench.errors import BenchError

TASKS = ("mt", "lm", "sum")
#: The task of the model config each task builds (models.config.TASKS).
MODEL_TASK = {"mt": "mt", "lm": "lm", "sum": "mt"}
#: Summaries are capped at this many subwords (the longest synopsis of the default corpus has 44).
SUM_MAX_OUTPUT = 48
#: The corpus each task trains and evaluates on unless a command names another.
DEFAULT_CORPUS = {"mt": "libreoffice-en-de", "lm": "sotu", "sum": "debian-descriptions"}


def model_task(task: str) -> str:
    """The model config task of a comparison task: ``"mt"`` for ``"sum"``; BenchError for an unknown one."""
    if task not in MODEL_TASK:
        raise BenchError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    return MODEL_TASK[task]


def is_seq2seq(task: str) -> bool:
    """Whether the task's data are (source, target) pairs: translation and summarization."""
    return model_task(task) == "mt"
