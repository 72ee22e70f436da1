"The notebooks are the source: the library, the notebooks' cleanliness and the README must agree with them."
import filecmp, shutil, subprocess, sys, tempfile
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

def _copy_project(dest:Path) -> Path:
    for name in ('settings.ini', 'setup.py', 'README.md'): shutil.copy(ROOT/name, dest/name)
    shutil.copytree(ROOT/'nbs', dest/'nbs')
    shutil.copytree(ROOT/'pet_breeds', dest/'pet_breeds', ignore=shutil.ignore_patterns('__pycache__'))
    return dest

def _diff(a:Path, b:Path, pattern:str) -> list:
    names = sorted({p.name for p in a.glob(pattern)} | {p.name for p in b.glob(pattern)})
    return [n for n in names if not ((a/n).exists() and (b/n).exists() and filecmp.cmp(a/n, b/n, shallow=False))]

def test_nbdev_export_leaves_no_diff(tmp_path):
    proj = _copy_project(tmp_path)
    r = subprocess.run([str(BIN/'nbdev_export')], cwd=proj, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert _diff(ROOT/'pet_breeds', proj/'pet_breeds', '*.py') == [], "run nbdev_export and commit pet_breeds/"

def test_nbdev_clean_leaves_no_diff(tmp_path):
    proj = _copy_project(tmp_path)
    r = subprocess.run([str(BIN/'nbdev_clean')], cwd=proj, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert _diff(ROOT/'nbs', proj/'nbs', '*.ipynb') == [], "run nbdev_clean and commit nbs/"

def _built_files(out:Path) -> dict:
    "Relative path -> bytes of what `docs/build.py --out out` wrote: README.md and docs/, less the copied docs/images."
    files = [out/'README.md', *(p for p in (out/'docs').rglob('*') if p.is_file() and 'images' not in p.relative_to(out/'docs').parts[:1])]
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in files}

def test_readme_and_docs_are_built_from_the_notebooks(docs_build):
    "README.md and the HTML site in docs/ are byte for byte what `python docs/build.py` makes of nbs/ now (`--check` in one build)."
    sys.path.insert(0, str(ROOT/'docs'))
    try: import build
    finally: sys.path.remove(str(ROOT/'docs'))
    made = _built_files(docs_build)
    assert 'README.md' in made and 'docs/index.html' in made and len(made) > 20
    differ = [k for k, v in made.items() if not (ROOT/k).is_file() or (ROOT/k).read_bytes() != v]
    assert differ + build.stale(ROOT, made) == [], "out of date: run .venv/bin/python docs/build.py and commit"

def test_readme_holds_the_two_commands():
    text = (ROOT/'README.md').read_text()
    assert 'pip install -e . && .venv/bin/pet_breeds_train --out runs/pets' in text
    assert 'bash tests/run.sh' in text
    assert 'bash tests/run.sh' in (ROOT/'.ci'/'run').read_text()

def test_every_console_script_is_importable():
    from configparser import ConfigParser
    import importlib
    cfg = ConfigParser(delimiters=['=']); cfg.read(ROOT/'settings.ini')
    for spec in cfg['DEFAULT']['console_scripts'].split():
        name, target = spec.split('=')
        mod, fn = target.split(':')
        assert callable(getattr(importlib.import_module(mod), fn)), name

def test_every_scripted_mutation_still_applies():
    "CONTRIBUTING.md's mutation test counts every mutant in tests/mutations.py; one whose text the code no longer holds would count for nothing."
    sys.path.insert(0, str(ROOT/'tests'))
    try: import mutations
    finally: sys.path.remove(str(ROOT/'tests'))
    stale = []
    for i, m in enumerate(mutations.MUTATIONS, 1):
        try: m.apply((ROOT/'pet_breeds'/m.file).read_text())
        except LookupError as e: stale.append(f'{i} {m.name}: {e}')
    assert not stale, stale
    for i, m in enumerate(mutations.MUTATIONS, 1):   # a notebook target runs the notebook's cells: the edit must land there too
        if not mutations._notebooks(m.tests)[0]: continue
        with tempfile.TemporaryDirectory() as d:
            shutil.copytree(ROOT/'nbs', Path(d)/'nbs', ignore=shutil.ignore_patterns('images', 'models'))
            try: mutations.mutate_notebooks(Path(d), m)
            except LookupError as e: stale.append(f'{i} {m.name}: {e}')
    assert not stale, stale
    missing = [f'{i} {m.name}: {t}' for i, m in enumerate(mutations.MUTATIONS, 1) for t in m.tests if not _node_exists(t)]
    assert not missing, missing

def _node_exists(node_id:str) -> bool:
    "Whether pytest would find `node_id` (`tests/test_x.py`, `tests/test_x.py::test_y`, `...::TestC::test_y`, `...::test_y[param]`): the file parsed with `ast`; a notebook target (`nbs/x.ipynb`) when `nbdev_test` would run it."
    import ast
    path, *names = node_id.split('::')
    f = ROOT/path
    if f.suffix == '.ipynb': return not names and f.is_file() and f.parent == ROOT/'nbs' and not f.name.startswith('_')
    if not (f.is_file() and f.name.startswith('test_') and f.suffix == '.py'): return False
    scope = ast.parse(f.read_text()).body
    for i, name in enumerate(names):
        name = name.split('[')[0]
        last = i == len(names) - 1
        kinds = (ast.FunctionDef, ast.AsyncFunctionDef) if last else (ast.ClassDef,)
        found = [n for n in scope if isinstance(n, kinds) and n.name == name and name.startswith('test_' if last else 'Test')]
        if not found: return False
        scope = found[0].body
    return True

def test_node_exists_tells_real_test_ids_from_stale_ones():
    assert _node_exists('tests/test_repo.py') and _node_exists('tests/test_repo.py::test_every_scripted_mutation_still_applies')
    assert not _node_exists('tests/test_repo.py::test_no_such_test') and not _node_exists('tests/test_nothing.py')
    assert not _node_exists('tests/test_repo.py::_node_exists')         # not a test: pytest would not collect it
    assert _node_exists('nbs/60_tools.widget.ipynb') and not _node_exists('nbs/99_none.ipynb') and not _node_exists('tests/60_tools.widget.ipynb')
