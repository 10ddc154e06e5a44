"""Session fixtures: tiny local models built once, one real vLLM engine and one real server.

Engines are expensive on a 2-core CPU, so every test that needs vLLM shares the same
session-scoped offline engine and the same server. Under `make test` (two pytest-xdist
workers) each worker that runs such a test starts its own pair, so up to two engines and two
servers exist at once (xdist's `loadgroup` does not keep a marked group on one worker with
pytest 9 and xdist 3.8: checked, a group of six marked tests ran on both workers).
"""

from __future__ import annotations

import pytest

from cai.platform import prepare_vllm_env

prepare_vllm_env()


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """The tiny models' ChatML byte-level BPE tokenizer, trained once for the session."""
    from cai.testing import build_tokenizer

    return build_tokenizer(tmp_path_factory.mktemp("tiny-tokenizer"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer):
    """A random tiny Llama causal LM with a ChatML BPE tokenizer, saved to disk."""
    from cai.testing import build_tiny_causal_lm

    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm"), tokenizer=tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_reward_dir(tmp_path_factory, tiny_tokenizer):
    """A random tiny Llama sequence-classification reward model, saved to disk."""
    from cai.testing import build_tiny_reward_model

    return build_tiny_reward_model(tmp_path_factory.mktemp("tiny-rm"), tokenizer=tiny_tokenizer)


@pytest.fixture(scope="session")
def vllm_engine(tiny_model_dir):
    """One real vLLM offline engine (float32, prefix caching) on the tiny model."""
    from vllm import LLM

    llm = LLM(
        str(tiny_model_dir),
        dtype="float32",
        enforce_eager=True,
        enable_prefix_caching=True,
        max_model_len=2048,
        seed=0,
    )
    yield llm
    del llm


@pytest.fixture(scope="session")
def vllm_server(tiny_model_dir, tmp_path_factory):
    """One real `vllm` OpenAI-compatible server on 127.0.0.1 serving the tiny model."""
    from cai.serving import ServerOptions, VLLMServer

    log = tmp_path_factory.mktemp("server") / "server.log"
    server = VLLMServer(
        ServerOptions(
            model=str(tiny_model_dir),
            served_model_name="tiny",
            dtype="float32",
            max_model_len=2048,
            enforce_eager=True,
        ),
        log_path=log,
    )
    with server:
        yield server


@pytest.fixture(scope="session")
def vllm_backend(vllm_engine, tiny_model_dir):
    """cai's VLLMOfflineBackend over the shared offline engine (no second engine)."""
    from cai.backends.vllm_offline import VLLMOfflineBackend

    return VLLMOfflineBackend(str(tiny_model_dir), engine=vllm_engine, show_progress=False)


@pytest.fixture(scope="session")
def server_backend(vllm_server):
    """cai's OpenAIServerBackend on the shared vLLM server (served model name "tiny")."""
    from cai.backends.openai_server import OpenAIServerBackend

    backend = OpenAIServerBackend(
        [vllm_server.base_url], "tiny", max_concurrency=4, timeout_s=60, show_progress=False
    )
    yield backend
    backend.close()


BROWSER_TESTS = "tests/integration/test_label_browser.py"
def pytest_unconfigure(config):
    """Say on the last lines when the real-browser test could not run, and how to enable it:
    `-ra` lists the skip among many lines, where it is easy to miss."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    skipped = [
        report
        for report in reporter.stats.get("skipped", [])
        if report.nodeid.startswith(BROWSER_TESTS)
    ]
    if not skipped:
        return
    reporter.write_sep("=", "browser test skipped", yellow=True)
    reporter.write_line(
        f"{len(skipped)} test of the labelling page in headless Chromium did not run: "
        "Chromium or chromedriver is missing."
    )
    reporter.write_line(
        "Enable it with `make browser` (installs the system's chromium and chromium-driver "
        "with apt), then run `make test` again."
    )


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """accelerate keeps process-wide singletons; a trainer in one test must not fix the
    mixed-precision settings of the next (each CLI run is its own process in real use)."""
    yield
    import sys

    if "accelerate.state" in sys.modules:
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


@pytest.fixture(autouse=True)
def _restore_library_logging():
    """A CLI command run in-process routes library logs to its run directory (`cai.logs`);
    each real run is its own process, so undo that between tests."""
    import logging
    import os
    import sys

    from cai.logs import ROUTED_LOGGERS

    keys = (
        "CAI_ENGINE_LOG",
        "VLLM_CONFIGURE_LOGGING",
        "VLLM_LOGGING_CONFIG_PATH",
        "TRANSFORMERS_VERBOSITY",
        "TRANSFORMERS_NO_ADVISORY_WARNINGS",
        "HF_DATASETS_DISABLE_PROGRESS_BARS",
        "PYTHONWARNINGS",
    )
    saved_env = {k: os.environ.get(k) for k in keys}
    saved = {
        name: (
            list(logging.getLogger(name).handlers),
            logging.getLogger(name).level,
            logging.getLogger(name).propagate,
        )
        for name in ROUTED_LOGGERS
    }
    yield
    logging.captureWarnings(False)
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.enable_progress_bar()
    for key, value in saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if handler not in handlers:
                handler.close()
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
