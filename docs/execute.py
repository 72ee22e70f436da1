"""Run notebooks and keep their outputs, as nbdev's own notebooks do, so the docs show plots and tables.

Every cell runs in the notebook's folder, as `nbdev_test` runs it, except the cells flagged with one of
`tst_flags` (`#| slow`: the full dataset, hours on a CPU). Then `nbdev_clean` tidies the notebook.
    python docs/execute.py                  # every numbered notebook
    python docs/execute.py nbs/26_train.ipynb ...
"""
import subprocess, sys
from configparser import ConfigParser
from pathlib import Path
from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell
from fastcore.xtras import working_directory

ROOT = Path(__file__).resolve().parents[1]

def skip_flags() -> set:
    cfg = ConfigParser(delimiters=['=']); cfg.read(ROOT/'settings.ini')
    return set(cfg['DEFAULT'].get('tst_flags', '').split())

def _directives(src:str) -> set:
    return {l[3:].strip().split()[0] for l in src.splitlines() if l.startswith('#|') and l[3:].strip()}

def execute(fn:Path, flags:set) -> None:
    "Run `fn`'s cells (but those flagged with `flags`) and save the notebook with their outputs."
    nb = read_nb(fn)
    skip = lambda c: c.cell_type != 'code' or bool(flags & _directives(c.source))
    with working_directory(fn.parent): CaptureShell(fn).run_all(nb, exc_stop=True, preproc=skip)
    for c in nb.cells:
        if c.cell_type == 'code' and skip(c): c.outputs = []
    write_nb(nb, fn)
    subprocess.run([str(Path(sys.executable).parent/'nbdev_clean'), '--fname', str(fn)], check=True, cwd=ROOT)

if __name__ == '__main__':
    names = [Path(a).resolve() for a in sys.argv[1:]] or sorted((ROOT/'nbs').glob('[0-9]*.ipynb'))
    for fn in names:
        print(f'running {fn.name}', flush=True)
        execute(fn, skip_flags())
