"""The rehearsal: every `#| notest` cell of every notebook, run on this CPU against the local Hub replica.

A pytest plugin (`python -m pytest -p rehearsal NOTEBOOKS`, with tools/ on the path; `bash tools/rehearse.sh` does all
of it). Each notebook runs in one execnb `CaptureShell` (the shell nbdev-test uses), in a fresh working folder; its
`#| notest` cells are the test items, in notebook order, and its other cells run before them as setup, in order.
`SFT_COURSE_REHEARSAL=1` makes `can_run(...)` say yes and swaps the GPU profiles for CPU ones
(`sft_course.config.REHEARSAL_SWAP`, whose `max_new_tokens` also caps every `generate` call of a notest cell); the
Hugging Face cache variables point at `sft_course.offline.local_hub()`.

Two kinds of skip exist, written as a line in the notest cell:
    # rehearsal: skip (REASON)      the cell does not run (its data cannot be provided locally)
    # rehearsal: dry-run (REASON)   the cell runs with the Hub-writing calls replaced by stand-ins that check their
                                    arguments and record the call (for cells that need write access to the Hub)
Both count as skipped, with their reason. Anything that opens a network connection fails its cell.

    python tools/rehearsal.py env   # build (or check) the replica; print the `export` lines that point at it
"""
import contextlib, gc, inspect, os, re, shlex, socket, sys, tempfile, time
from pathlib import Path

import pytest

MARKER = re.compile(r"^[ \t]*#[ \t]*rehearsal:[ \t]*(skip|dry-run)[ \t]*\((.+)\)[ \t]*$", re.M)
ANY_MARKER = re.compile(r"^[ \t]*#[ \t]*rehearsal:", re.M)
REPORT_KEY = pytest.StashKey[dict]()


def cell_marker(source:str):
    "('skip' or 'dry-run', reason) from a cell's `# rehearsal: ...` line, or None; a malformed marker is an error."
    m = MARKER.search(source)
    if m: return m.group(1), m.group(2).strip()
    if ANY_MARKER.search(source):
        raise ValueError("Unreadable rehearsal marker: write `# rehearsal: skip (REASON)` or `# rehearsal: dry-run (REASON)`.")
    return None


# ---------------------------------------------------------------------------------------------- Hub-writing stand-ins
class HubWriteRefused(Exception):
    "A Hub-writing call in a dry-run cell had arguments the real call would refuse."


def _repo_id(repo_id, call):
    from huggingface_hub.utils import HFValidationError, validate_repo_id
    if not isinstance(repo_id, str) or not repo_id:
        raise HubWriteRefused(f"{call}: repo_id must be a non-empty string, got {repo_id!r}")
    try: validate_repo_id(repo_id)
    except HFValidationError as e: raise HubWriteRefused(f"{call}: invalid repo_id {repo_id!r}: {e}") from None
    return repo_id


def _folder(path, call):
    p = Path(path) if path is not None else None
    if p is None or not p.is_dir(): raise HubWriteRefused(f"{call}: folder {path!r} does not exist")
    n = sum(1 for f in p.rglob("*") if f.is_file())
    if not n: raise HubWriteRefused(f"{call}: folder {path!r} is empty")
    return n


class HubWrites:
    "Inside the block, Hub-writing calls check their arguments and are recorded in `calls` instead of uploading."
    API = ("create_repo", "upload_folder", "upload_file", "create_commit")

    def __init__(self): self.calls, self._undo = [], []

    def _record(self, call, repo_id, checked):
        self.calls.append(dict(call=call, repo_id=repo_id, checked=checked))

    # HfApi methods -------------------------------------------------------------------------------------------------
    def _api_standin(self, name, original):
        sig, hub = inspect.signature(original), self
        def standin(*args, **kwargs):
            a = sig.bind(*args, **kwargs).arguments
            call = f"HfApi.{name}"
            repo = _repo_id(a.get("repo_id"), call)
            if name == "create_repo":
                if a.get("repo_type") not in (None, "model", "dataset", "space"):
                    raise HubWriteRefused(f"{call}: unknown repo_type {a.get('repo_type')!r}")
                checked = "repo id"
            elif name == "upload_folder": checked = f"repo id, folder with {_folder(a.get('folder_path'), call)} files"
            elif name == "upload_file":
                src, dest = a.get("path_or_fileobj"), a.get("path_in_repo")
                if isinstance(src, (str, Path)) and not Path(src).is_file(): raise HubWriteRefused(f"{call}: no file {src!r}")
                if not dest: raise HubWriteRefused(f"{call}: path_in_repo is empty")
                checked = f"repo id, file for {dest!r}"
            else:
                ops = list(a.get("operations") or [])
                if not ops: raise HubWriteRefused(f"{call}: no operations")
                for op in ops:
                    src = getattr(op, "path_or_fileobj", None)
                    if isinstance(src, (str, Path)) and not Path(src).is_file(): raise HubWriteRefused(f"{call}: no file {src!r}")
                checked = f"repo id, {len(ops)} operations"
            hub._record(call, repo, checked)
            from huggingface_hub import CommitInfo, RepoUrl
            if name == "create_repo": return RepoUrl(f"https://huggingface.co/{repo}")
            return CommitInfo(commit_url=f"https://huggingface.co/{repo}/commit/{'0' * 40}", commit_message="dry-run",
                              commit_description="", oid="0" * 40)
        return standin

    # push_to_hub methods ---------------------------------------------------------------------------------------------
    def _mixin_push(self, original):
        sig, hub = inspect.signature(original), self
        def push_to_hub(obj, *args, **kwargs):
            call = f"{type(obj).__name__}.push_to_hub"
            repo = _repo_id(sig.bind(obj, *args, **kwargs).arguments.get("repo_id"), call)
            with tempfile.TemporaryDirectory() as d:
                obj.save_pretrained(d)  # what the real method uploads
                n = _folder(d, call)
            hub._record(call, repo, f"repo id, save_pretrained wrote {n} files")
            return f"https://huggingface.co/{repo}"
        return push_to_hub

    def _trainer_push(self, original):
        hub = self
        def push_to_hub(trainer, *args, **kwargs):
            call = f"{type(trainer).__name__}.push_to_hub"
            name = trainer.args.hub_model_id or Path(trainer.args.output_dir).absolute().name
            repo = _repo_id(name, call)
            trainer.save_model()  # the real method saves the model into output_dir, then uploads that folder
            n = _folder(trainer.args.output_dir, call)
            hub._record(call, repo, f"repo id, output_dir with {n} files")
        return push_to_hub

    def _dataset_push(self, original):
        sig, hub = inspect.signature(original), self
        def push_to_hub(ds, *args, **kwargs):
            call = f"{type(ds).__name__}.push_to_hub"
            repo = _repo_id(sig.bind(ds, *args, **kwargs).arguments.get("repo_id"), call)
            rows = sum(len(d) for d in ds.values()) if hasattr(ds, "values") else len(ds)
            if not rows: raise HubWriteRefused(f"{call}: the dataset is empty")
            hub._record(call, repo, f"repo id, {rows} rows")
        return push_to_hub

    def _card_push(self, original):
        sig, hub = inspect.signature(original), self
        def push_to_hub(card, *args, **kwargs):
            call = f"{type(card).__name__}.push_to_hub"
            repo = _repo_id(sig.bind(card, *args, **kwargs).arguments.get("repo_id"), call)
            if not card.text.strip(): raise HubWriteRefused(f"{call}: the card has no text")
            card.data.to_dict()  # its metadata must serialise: the Hub validates it as YAML
            hub._record(call, repo, f"repo id, a card of {len(str(card)):,} characters")
        return push_to_hub

    def _patch(self, owner, name, value):
        self._undo.append((owner, name, owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)))
        setattr(owner, name, value)

    def __enter__(self):
        import huggingface_hub
        from huggingface_hub import HfApi
        for name in self.API:
            original = getattr(HfApi, name)
            standin = self._api_standin(name, original)
            self._patch(HfApi, name, standin)
            # module-level aliases (`huggingface_hub.create_repo`, and copies imported elsewhere) are bound methods
            # of a default HfApi, made before this patch: replace every one found in a loaded module
            for mod in list(sys.modules.values()):
                attr = getattr(mod, "__dict__", {}).get(name)  # not getattr: lazy modules would import on lookup
                if getattr(attr, "__func__", None) is original:
                    self._patch(mod, name, (lambda f: lambda *a, **k: f(None, *a, **k))(standin))
        # push_to_hub of models, configs, tokenizers, processors and PEFT models (PushToHubMixin and the subclasses
        # that override it), and of trainers
        from transformers import Trainer
        from transformers.utils.hub import PushToHubMixin
        def overriding(base):
            seen, todo = [], [base]
            while todo:
                cls = todo.pop()
                if "push_to_hub" in cls.__dict__ and cls not in seen: seen.append(cls)
                todo.extend(cls.__subclasses__())
            return seen
        for cls in overriding(PushToHubMixin):
            self._patch(cls, "push_to_hub", self._mixin_push(cls.__dict__["push_to_hub"]))
        for cls in overriding(Trainer):
            self._patch(cls, "push_to_hub", self._trainer_push(cls.__dict__["push_to_hub"]))
        from huggingface_hub import RepoCard  # model and dataset cards (the real call validates them online first)
        for cls in overriding(RepoCard):
            self._patch(cls, "push_to_hub", self._card_push(cls.__dict__["push_to_hub"]))
        import datasets
        for cls in (datasets.Dataset, datasets.DatasetDict):
            self._patch(cls, "push_to_hub", self._dataset_push(cls.push_to_hub))
        return self

    def __exit__(self, *exc):
        for owner, name, value in reversed(self._undo): setattr(owner, name, value)
        self._undo.clear()

    def summary(self) -> str:
        return "; ".join(f"{c['call']}({c['repo_id']!r}): {c['checked']}" for c in self.calls)


# ------------------------------------------------------------------------------------------------------ network guard
class NetworkBlocked(OSError):
    "A rehearsal cell tried to open a network connection."


@contextlib.contextmanager
def no_network():
    "Refuse every socket connection except to this machine (loopback, Unix sockets)."
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    def local(sock, address):
        if sock.family not in (socket.AF_INET, socket.AF_INET6): return True
        host = address[0] if isinstance(address, tuple) else str(address)
        return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")
    def connect(sock, address):
        if not local(sock, address): raise NetworkBlocked(f"the rehearsal runs offline: connection to {address!r} refused")
        return real_connect(sock, address)
    def connect_ex(sock, address):
        if not local(sock, address): raise NetworkBlocked(f"the rehearsal runs offline: connection to {address!r} refused")
        return real_connect_ex(sock, address)
    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
    try: yield
    finally: socket.socket.connect, socket.socket.connect_ex = real_connect, real_connect_ex


# ------------------------------------------------------------------------------------------------ notebooks as tests
def one_line(e:BaseException, limit:int=240) -> str:
    "An exception as one line: type and message, and the exception it was raised while handling."
    line = lambda x: f"{type(x).__name__}: {' '.join(str(x).split())}".rstrip(": ")
    out = line(e)
    if e.__context__ is not None and not e.__suppress_context__: out += f" (while handling {line(e.__context__)})"
    return out if len(out) <= limit else out[:limit - 3] + "..."


class CellFailed(Exception):
    "A notebook cell raised (or broke a rule); carries the cell, its formatted traceback and a one-line cause."
    def __init__(self, where, source, tb, cause):
        super().__init__(where)
        self.where, self.source, self.tb, self.cause = where, source, tb, cause


@contextlib.contextmanager
def generation_cap():
    """While a notest cell runs, `generate` makes at most `REHEARSAL_SWAP`'s `max_new_tokens` (64) new tokens. The real
    cells ask for up to 1,024, which a CPU pays for token by token through the replica's 151,936-token output layer,
    and the replica's random weights never stop early. The number lives in one place, `sft_course.config.REHEARSAL_SWAP`."""
    import functools
    from transformers.generation.utils import GenerationMixin
    from sft_course.config import REHEARSAL_SWAP
    cap, real = REHEARSAL_SWAP["generation"]["max_new_tokens"], GenerationMixin.generate
    @functools.wraps(real)
    def generate(self, *args, **kwargs):
        if kwargs.get("max_new_tokens") is None or kwargs["max_new_tokens"] > cap: kwargs["max_new_tokens"] = cap
        return real(self, *args, **kwargs)
    GenerationMixin.generate = generate
    try: yield
    finally: GenerationMixin.generate = real


class NotebookRun:
    "One shell per notebook: runs its cells in order, up to each notest cell, in a fresh working folder."
    def __init__(self, path:Path, cells:list, keep_going:bool=False):
        from nbdev.config import get_config
        self.path, self.cells, self.next, self.shell, self.broken = path, cells, 0, None, None
        self.keep_going, self.setup_failures = keep_going, []
        self.timeout = get_config(path.parent).cell_timeout  # read now: cells run in a temporary working folder
        self._cwd, self._tmp = None, None

    def _start(self):
        from execnb.shell import CaptureShell
        self._cwd, self._tmp = os.getcwd(), tempfile.TemporaryDirectory(prefix=f"rehearsal-{self.path.stem}-")
        os.chdir(self._tmp.name)
        os.environ["IN_TEST"] = "1"
        self.shell = CaptureShell(self.path)

    def run_cell(self, i:int):
        "Run cell `i`; raise CellFailed with its traceback if it raises."
        from execnb.shell import format_exc
        if self.shell is None: self._start()
        cell = self.cells[i]
        self.shell.run(cell.source, timeout=self.timeout)
        if self.shell.exc is not None:
            e, self.shell.exc = self.shell.exc, None
            raise CellFailed(f"{self.path.name} {cell_name(cell)}", cell.source, "".join(format_exc(e)), one_line(e))

    def run_setup_until(self, i:int):
        "Run the cells before notest cell `i` that have not run yet (notest cells run only as their own items)."
        if self.broken: raise self.broken
        while self.next < i:
            j, self.next = self.next, self.next + 1
            if self.cells[j].is_notest: continue
            try: self.run_cell(j)
            except CellFailed as e:
                if self.keep_going: self.setup_failures.append((cell_name(self.cells[j]), e.cause)); continue
                self.broken = CellFailed(f"setup {e.where} failed, so the notebook stopped there", e.source, e.tb,
                                         f"setup {cell_name(self.cells[j])} failed: {e.cause}")
                raise self.broken from None
        self.next = i + 1

    def close(self):
        if self.shell is not None:
            with contextlib.suppress(Exception): self.shell.reset(new_session=False)
            with contextlib.suppress(Exception): self.shell.close()
            self.shell = None
        if self._cwd: os.chdir(self._cwd); self._cwd = None
        if self._tmp: self._tmp.cleanup(); self._tmp = None
        os.environ.pop("IN_TEST", None)
        gc.collect()


def cell_name(cell) -> str:
    "How reports name a cell: its position in the notebook (counting every cell, from 0) and its id."
    return f"cell {cell.idx_} [{cell.get('id', '?')}]"


def notebook_cells(path:Path) -> list:
    "The cells nbdev-test would evaluate, each with `is_notest` and its position; empty if the notebook is skipped."
    from nbdev.config import get_config
    from nbdev.process import NBProcessor
    from nbdev.test import _skip_cell
    nb = NBProcessor(path, rm_directives=False, process=True).nb
    flags = set(str(get_config(path.parent).tst_flags or "notest").split())
    skip = _skip_cell(nb, skip_flags=None)
    cells = [c for c in nb.cells if not skip(c)]
    for c in cells: c.is_notest = bool(flags & set((getattr(c, "directives_", {}) or {}).keys()))
    return cells


class NotebookFile(pytest.File):
    def collect(self):
        cells = notebook_cells(self.path)
        run = NotebookRun(self.path, cells, keep_going=self.config.getoption("rehearsal_keep_going"))
        for i, c in enumerate(cells):
            if c.is_notest:
                yield NotestCell.from_parent(self, name=cell_name(c), run=run, index=i)


class NotestCell(pytest.Item):
    def __init__(self, *, run:NotebookRun, index:int, **kw):
        super().__init__(**kw)
        self.run, self.index, self.closes_run = run, index, False
        self.cell = run.cells[index]

    def runtest(self):
        report = self.config.stash[REPORT_KEY]
        marker = cell_marker(self.cell.source)
        if marker and marker[0] == "skip":
            report["skipped"].append((self, f"skip ({marker[1]})"))
            pytest.skip(f"rehearsal: skip ({marker[1]})")
        self.run.run_setup_until(self.index)
        if marker:
            with HubWrites() as hub, generation_cap(): self.run.run_cell(self.index)
            if not hub.calls:
                raise CellFailed(f"{self.name}: marked dry-run, but it made no Hub-writing call", self.cell.source,
                                 "Remove the marker, or make the call the marker is for.",
                                 "marked dry-run, but it made no Hub-writing call")
            reason = f"dry-run ({marker[1]}); checked: {hub.summary()}"
            report["skipped"].append((self, reason))
            pytest.skip(f"rehearsal: {reason}")
        with generation_cap(): self.run.run_cell(self.index)

    def teardown(self):
        if self.closes_run: self.run.close()

    def repr_failure(self, excinfo, style=None):
        e = excinfo.value
        if isinstance(e, CellFailed):
            return f"{e.where}\n--- cell source ---\n{e.source}\n--- traceback ---\n{e.tb}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"{self.path.name}::{self.name}"


# -------------------------------------------------------------------------------------------------------- pytest hooks
def pytest_addoption(parser):
    parser.getgroup("rehearsal").addoption(
        "--rehearsal-keep-going", action="store_true", dest="rehearsal_keep_going",
        help="diagnostics: when a setup (non-notest) cell fails, list it and go on instead of failing the notebook's "
             "remaining notest cells; each notest cell is then judged on its own")


def pytest_configure(config):
    config.stash[REPORT_KEY] = {"ran": [], "skipped": [], "failed": []}
    os.environ["SFT_COURSE_REHEARSAL"] = "1"
    for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"): os.environ.setdefault(v, "1")
    config._rehearsal_guard = no_network()
    config._rehearsal_guard.__enter__()


def pytest_unconfigure(config):
    guard = getattr(config, "_rehearsal_guard", None)
    if guard is not None: guard.__exit__(None, None, None)


def pytest_collect_file(file_path:Path, parent):
    if file_path.suffix == ".ipynb" and not file_path.name.startswith(("_", ".")) \
            and ".ipynb_checkpoints" not in file_path.parts:
        return NotebookFile.from_parent(parent, path=file_path)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    last = {}
    for item in items:
        if isinstance(item, NotestCell): last[item.run] = item
    for item in last.values(): item.closes_run = True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if isinstance(item, NotestCell) and rep.when == "call":
        r = item.config.stash[REPORT_KEY]
        if rep.passed: r["ran"].append(item)
        elif rep.failed:
            r["ran"].append(item)
            e = call.excinfo.value if call.excinfo else None
            r["failed"].append((item, e.cause if isinstance(e, CellFailed) else one_line(e)))
    return rep


def pytest_sessionfinish(session):
    for item in session.items:
        if isinstance(item, NotestCell): item.run.close()
    session.config.stash[REPORT_KEY]["setup_failures"] = [
        (run, name, cause) for run in dict.fromkeys(i.run for i in session.items if isinstance(i, NotestCell))
        for name, cause in run.setup_failures]


def _where(item): return f"{item.path.relative_to(item.config.rootpath) if item.path.is_relative_to(item.config.rootpath) else item.path} {item.name}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    yield
    r = config.stash[REPORT_KEY]
    tr = terminalreporter
    for run, name, cause in r.get("setup_failures", []):
        tr.write_line(f"rehearsal: setup cell failed {run.path.relative_to(config.rootpath)} {name}: {cause}")
    for item, cause in r["failed"]: tr.write_line(f"rehearsal: failed {_where(item)}: {cause}")
    for item, reason in r["skipped"]: tr.write_line(f"rehearsal: skipped {_where(item)}: {reason}")
    tr.write_line(f"rehearsal: {len(r['ran'])} notest cells ran, {len(r['skipped'])} skipped")


# ---------------------------------------------------------------------------------------------------------------- CLI
def main(argv):
    if argv[1:] != ["env"]:
        print(__doc__, file=sys.stderr); return 2
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        from sft_course.offline import local_hub
        hub = local_hub()
    print(f"local Hub replica ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    for k, v in hub.env.items(): print(f"export {k}={shlex.quote(v)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
