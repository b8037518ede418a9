"The project's own promises: README derived from index.ipynb, quick-start commands, CI calls them, sidebar complete."
import re, subprocess, sys, tomllib

import nbformat
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/"tools"))
import nbsync  # noqa: E402


def test_readme_and_derived_cells_in_sync():
    r = subprocess.run([sys.executable, str(ROOT/"tools"/"nbsync.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, "run `python tools/nbsync.py` and commit:\n" + r.stdout


def test_readme_drift_is_detected(tmp_path, monkeypatch):
    "The check really compares: an edited index notebook makes README.md stale."
    import nbformat
    nb = nbformat.read(ROOT/"nbs"/"index.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("A new paragraph the README does not have yet."))
    monkeypatch.setattr(nbformat, "read", lambda *a, **k: nb)
    assert "A new paragraph" in nbsync.render_readme()
    assert nbsync.render_readme() != (ROOT/"README.md").read_text()


def _quick_start():
    text = (ROOT/"README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, re.S)


def test_quick_start_has_exactly_two_commands():
    cmds = _quick_start()
    assert len(cmds) == 2 and all("\n" not in c for c in cmds)
    run, test = cmds
    assert run.startswith("pip install torch==") and run.endswith("sft-course train --quick")
    assert 'pip install -e ".[dev]"' in test and test.endswith("bash tools/test.sh")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT/".ci"/"run").read_text()
    pattern = re.search(r"grep -m1 -E '(.+?)' README.md", ci).group(1)
    assert re.search(pattern, _quick_start()[1])
    assert "HF_HUB_OFFLINE=1" in ci and "HF_DATASETS_OFFLINE=1" in ci


def test_sidebar_lists_every_notebook_once_in_order():
    "Home page first; every notebook in exactly one section; lessons (and each other section) in file-name order."
    listed = nbsync.chapters()
    on_disk = sorted(p.name for p in (ROOT/"nbs").glob("*.ipynb") if p.name != "index.ipynb")
    assert sorted(listed) == on_disk and len(listed) == len(set(listed))
    for names in nbsync.sections().values(): assert names == sorted(names)
    assert nbsync.lessons()[0] == "00_environment.ipynb"
    assert (ROOT/"nbs"/"sidebar.yml").read_text().splitlines()[3].strip() == "- index.ipynb"


def test_chapters_open_with_title_summary_and_setup_cell():
    import nbformat
    for name in nbsync.chapters():
        nb = nbformat.read(ROOT/"nbs"/name, as_version=4)
        title, summary = nbsync.title_and_summary(nb)
        assert title and summary, name
        assert nb.cells[1].source == nbsync.setup_cell(), name


def test_repository_url_lives_in_pyproject_only():
    url = tomllib.loads((ROOT/"pyproject.toml").read_text())["project"]["urls"]["Repository"]
    index = (ROOT/"nbs"/"index.ipynb").read_text()
    assert f"colab.research.google.com/github/{'/'.join(url.split('/')[-2:])}/blob/main/nbs/" in index
    for name in nbsync.chapters(): assert url in (ROOT/"nbs"/name).read_text()  # via the generated setup cell


def test_nbdev_config_and_layout():
    cfg = tomllib.loads((ROOT/"pyproject.toml").read_text())
    nb = cfg["tool"]["nbdev"]
    assert (nb["nbs_path"], nb["doc_path"], nb["jupyter_hooks"]) == ("nbs", "_docs", True)
    assert cfg["project"]["name"] == "sft-course" and cfg["project"]["requires-python"] == ">=3.10"
    assert "dev" in cfg["project"]["optional-dependencies"]
    assert not (ROOT/"settings.ini").exists() and (ROOT/"setup.py").exists() and (ROOT/"nbs"/"_quarto.yml").exists()
    for wf in ("test.yaml", "deploy.yaml"): assert (ROOT/".github"/"workflows"/wf).exists()


def test_nbdev_proc_nbs_prepares_every_chapter_for_the_docs(tmp_path):
    "The docs site's preprocessing works (Quarto itself runs in the Pages workflow, not here)."
    import os, shutil
    fake = tmp_path/"bin"; fake.mkdir()
    (fake/"quarto").write_text("#!/bin/sh\nexit 0\n"); (fake/"quarto").chmod(0o755)  # stops nbdev trying to install Quarto
    shutil.rmtree(ROOT/"_proc", ignore_errors=True)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    r = subprocess.run(["nbdev-proc-nbs"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ["index.ipynb"] + nbsync.chapters(): assert (ROOT/"_proc"/name).exists(), name
    assert (ROOT/"_proc"/"sidebar.yml").read_text() == (ROOT/"nbs"/"sidebar.yml").read_text()


def _readme_section(title):
    text = (ROOT/"README.md").read_text()
    assert f"\n## {title}\n" in text, f"README.md has no '## {title}' section"
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_home_page_has_prerequisites_outcomes_and_time_per_chapter():
    import nbformat
    assert len(re.findall(r"^- \*\*", _readme_section("Before you start"), re.M)) >= 3
    outcomes = _readme_section("What you will be able to do")
    assert len(re.findall(r"^\d+\. ", outcomes, re.M)) >= 5
    titles = [nbsync.title_and_summary(nbformat.read(ROOT/"nbs"/n, as_version=4))[0] for n in nbsync.lessons()]
    for t in titles:  # every chapter that exists is promised an outcome; none is announced as unwritten
        m = re.match(r"Chapter (\d+)", t)
        if m: assert re.search(rf"\(chapter {m.group(1)}[,)]", outcomes), t
    assert not re.search(r"being written|coming soon", outcomes, re.I)
    times = _readme_section("Time per chapter")
    rows = [l for l in times.splitlines() if l.startswith("| ") and "---" not in l][1:]
    assert [r.split(" | ")[0].lstrip("| ") for r in rows] == titles  # one row per lesson, in sidebar order
    assert all(re.search(r"\| \d+ min \|", r) for r in rows) and "measured" in times and "estimate" in times


def test_maintainer_material_lives_on_the_development_page():
    readme = (ROOT/"README.md").read_text()
    assert "settings.ini" not in readme and "nbdev_export" not in readme  # the nbdev 2 -> 3 table moved
    import nbformat
    dev = nbformat.read(ROOT/"nbs"/"99_development.ipynb", as_version=4)
    text = "\n".join(c.source for c in dev.cells)
    assert "settings.ini" in text and "nbdev-proc-nbs" in text and "tools/nbsync.py" in text
    assert not any(c.cell_type == "code" and re.search(r"^#\|\s*(default_exp|export)", c.source, re.M) for c in dev.cells)
    appendix = nbsync.sections()["Appendix"]
    assert "99_development.ipynb" in appendix and "00b_errors.ipynb" in appendix
    assert "00b_errors.ipynb" not in nbsync.lessons()
    for name in appendix: assert nbsync.title_and_summary(nbformat.read(ROOT/"nbs"/name, as_version=4))[0], name
    assert nbsync.title_and_summary(nbformat.read(ROOT/"nbs"/"00b_errors.ipynb", as_version=4))[0].startswith("Appendix")


def test_every_module_comes_from_one_notebook():
    "A companion exports its own module; no two notebooks export to the same one (a lesson imports from its companion)."
    import nbformat
    owner = {}
    for name in nbsync.chapters():
        for c in nbformat.read(ROOT/"nbs"/name, as_version=4).cells:
            m = re.match(r"#\|\s*default_exp\s+(\S+)", c.source) if c.cell_type == "code" else None
            if m:
                assert m.group(1) not in owner, f"{name} and {owner[m.group(1)]} both export sft_course/{m.group(1)}.py"
                owner[m.group(1)] = name
    for name in nbsync.sections().get("How it works", []): assert name in owner.values(), f"{name} exports no module"


def _shows_something(src:str) -> bool:
    "Does a code cell end in something Jupyter displays (a bare expression that is not a test call), or print?"
    import ast
    lines = [l for l in src.splitlines() if l.strip()]
    if not lines or any(l.lstrip("#| ").startswith(("export", "hide", "notest")) for l in lines if l.startswith("#|")): return False
    if re.search(r"(?<![\w.])(print|display)\(", src): return True
    try: tree = ast.parse("\n".join(l for l in lines if not l.startswith("#|")))
    except SyntaxError: return False
    last = tree.body[-1] if tree.body else None
    if not isinstance(last, ast.Expr): return False
    f = getattr(last.value, "func", None)
    return not (f is not None and getattr(f, "id", getattr(f, "attr", "")).startswith("test"))


def test_notebooks_are_committed_with_their_outputs():
    "A reader on GitHub sees only committed outputs: a notebook saved without running (chapter 4 once was) shows nothing."
    for path in sorted((ROOT/"nbs").glob("*.ipynb")):
        cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code" and _shows_something(c.source)]
        empty = [c.source.splitlines()[0] for c in cells if not c.get("outputs")]
        assert len(empty) <= len(cells) / 2, f"{path.name}: {len(empty)} of {len(cells)} cells that show something have no output: {empty[:3]}"


def test_committed_outputs_show_no_machine_paths():
    "Temporary and home directories of the machine that ran a notebook mean nothing to its reader."
    import re
    bad = re.compile(r"/tmp/|/work/|/home/\w+|/root/|[A-Z]:\\\\Users")
    for path in sorted((ROOT/"nbs").glob("*.ipynb")):
        for c in nbformat.read(path, as_version=4).cells:
            for o in c.get("outputs", []):
                texts = [o.get("text", "")] + [v for k, v in o.get("data", {}).items() if k.startswith("text/")]
                for t in texts:
                    m = bad.search(t if isinstance(t, str) else "".join(t))
                    assert not m, f"{path.name}: an output shows {m.group(0)!r}: {c.source.splitlines()[0]!r}"


def test_links_between_chapters_name_the_notebook():
    "`[x](02_dataset_preparation.ipynb)` works on GitHub, in JupyterLab and (rewritten by nbdev) on the site; a docs-page name only on the site."
    import re
    pages = {nbsync.doc_page(n) for n in nbsync.chapters()}
    for path in sorted((ROOT/"nbs").glob("*.ipynb")):
        for i, c in enumerate(nbformat.read(path, as_version=4).cells):
            if c.cell_type != "markdown": continue
            bad = [m for m in re.findall(r"\]\(([\w.-]+\.html)(?:#[^)]*)?\)", c.source) if m in pages]
            assert not bad, f"{path.name} cell {i}: link {bad[0]} by its docs page; name the notebook instead"
