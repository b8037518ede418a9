import os, pytest

# Tests never touch the network: the Hub libraries are told so before anything imports them.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def offline_dir(tmp_path_factory):
    "The offline stand-in built once per test session in a private cache directory."
    from sft_course.offline import offline_model_path
    return offline_model_path(cache_dir=tmp_path_factory.mktemp("cache"))
