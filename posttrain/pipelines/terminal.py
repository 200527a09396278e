"""What a command prints besides its tables (those are in report/console.py): our log level, and
library chatter kept out of the way."""

from __future__ import annotations

from typing import Any

from posttrain.errors import PosttrainError


def set_log_level(name: str) -> None:
    """Our loggers at `name` (DEBUG, INFO, WARNING or ERROR); libraries stay at WARNING."""
    import logging

    level = getattr(logging, name.upper(), None)
    if not isinstance(level, int):
        raise PosttrainError(f"--log-level {name}: expected DEBUG, INFO, WARNING or ERROR")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("posttrain").setLevel(level)


def quiet_libraries() -> None:
    """Keep the terminal for our progress bars and summaries, not library deprecation chatter."""
    import logging
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    for name in ("transformers", "trl", "peft", "datasets", "accelerate", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import datasets
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.set_tqdm_hook(_no_loading_bar)
        datasets.disable_progress_bars()
    except ImportError:
        pass


def _no_loading_bar(factory: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """transformers' tqdm hook: its "Loading weights" bar (one per model a run loads, several in a
    pipeline, each unlabelled in our output) becomes a silent one; every other bar is kept."""
    from transformers.utils.logging import EmptyTqdm

    if kwargs.get("desc") == "Loading weights":
        return EmptyTqdm(*args, **kwargs)
    return factory(*args, **kwargs)
