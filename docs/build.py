"""Build README.md and docs/*.md from the notebooks, without Quarto (which cannot be installed here).

nbdev's directives decide what readers see, as nbdev_docs would: `#| hide` cells are left out and
`#|` lines are dropped from the cells that stay. Outputs stored in a notebook are kept. Run:
    python docs/build.py           # write README.md and docs/<notebook>.md
    python docs/build.py --check   # exit 1 if any of them is out of date
"""
import sys
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter

ROOT = Path(__file__).resolve().parents[1]
NBS, DOCS = ROOT/'nbs', ROOT/'docs'

def _directives(src:str) -> set:
    return {l[3:].strip().split()[0] for l in src.splitlines() if l.startswith('#|') and l[3:].strip()}

def reader_view(nb):
    "The notebook as nbdev's docs show it: hidden cells out, directive lines out, empty cells out."
    cells = []
    for c in nb.cells:
        if c.cell_type == 'code':
            if {'hide', 'default_exp'} & _directives(c.source): continue
            c.source = '\n'.join(l for l in c.source.splitlines() if not l.startswith('#|')).strip()
            if not c.source: continue
        cells.append(c)
    nb.cells = cells
    return nb

def render(nb_path:Path) -> str:
    nb = reader_view(nbformat.read(nb_path, as_version=4))
    body, _ = MarkdownExporter().from_notebook_node(nb)
    note = f'<!-- generated from nbs/{nb_path.name} by docs/build.py: edit the notebook, not this file -->\n\n'
    return note + body.strip() + '\n'

def targets() -> dict:
    "Output file -> rendered text, for the README and every numbered notebook."
    res = {ROOT/'README.md': render(NBS/'index.ipynb')}
    for nb in sorted(NBS.glob('[0-9]*.ipynb')): res[DOCS/f'{nb.stem}.md'] = render(nb)
    return res

def main(check:bool=False) -> int:
    stale = []
    for path, text in targets().items():
        if check:
            if not path.exists() or path.read_text() != text: stale.append(path.relative_to(ROOT))
        else: path.write_text(text)
    if stale: print('out of date (run python docs/build.py):', *stale, sep='\n  ')
    return 1 if stale else 0

if __name__ == '__main__': sys.exit(main('--check' in sys.argv))
