"""The documentation site, rebuilt from the notebooks into a temporary folder (never into the tree): every
page there, no broken link or image, exported definitions shown as `show_doc`, stored plots shown, (navigation in
Debian's Chromium is checked on the committed site by tests/browser_check.py). `python docs/build.py --check` (tests/test_repo.py) checks that
the committed README.md and docs/ are this build."""
import base64, functools, json, re, shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit
import pytest
from conftest import build_docs

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
SITE_BUDGET = 5_000_000  # bytes: the site is committed, so it has to stay small

build = build_docs   # conftest: the one way the tests build the site

@pytest.fixture(scope='module')
def site(docs_build): return docs_build/'docs'   # the run's one build (conftest)

def notebooks(nbs:Path=NBS) -> list: return [nbs/'index.ipynb', *sorted(nbs.glob('[0-9]*.ipynb'))]

class Page(HTMLParser):
    "What the checks need from one HTML page: its ids, links, images and text."
    def __init__(self, path:Path):
        super().__init__()
        self.path, self.ids, self.links, self.imgs, self.title = path, set(), [], [], ''
        self._in_title = False
        self.feed(path.read_text(encoding='utf-8'))
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if 'id' in a: self.ids.add(a['id'])
        if tag == 'a' and a.get('href') is not None: self.links.append(a['href'])
        if tag == 'link' and a.get('href'): self.links.append(a['href'])
        if tag in ('img', 'script') and a.get('src') is not None: self.imgs.append(a['src'])
        self._in_title = tag == 'title'
    def handle_endtag(self, tag): self._in_title = False
    def handle_data(self, data):
        if self._in_title: self.title += data

@functools.lru_cache(None)
def parse(path:Path) -> Page: return Page(path)

def broken(site:Path) -> list:
    "Every internal link to a missing file or anchor, and every image that is neither a data URI nor a file."
    bad = []
    for html in sorted(site.glob('*.html')):
        page = parse(html)
        for href in page.links:
            u = urlsplit(href)
            if u.scheme or u.netloc: continue  # external
            target = (html.parent/unquote(u.path)).resolve() if u.path else html
            if not target.is_file(): bad.append(f'{html.name}: link to missing {href!r}'); continue
            if u.fragment and target.suffix == '.html' and u.fragment not in parse(target).ids:
                bad.append(f'{html.name}: link to missing anchor {href!r}')
        for src in page.imgs:
            if src.startswith('data:'): continue
            u = urlsplit(src)
            if u.scheme or u.netloc: bad.append(f'{html.name}: image from elsewhere {src!r} (the site works offline)')
            elif not (html.parent/unquote(u.path)).is_file(): bad.append(f'{html.name}: missing image {src!r}')
    return bad

def test_a_page_per_notebook_with_nav_and_title(site):
    pages = [f'{p.stem}.html' for p in notebooks()]
    assert sorted(p.name for p in site.glob('*.html')) == sorted(pages)
    assert not list(site.glob('*.md')), 'the old per-notebook markdown is gone'
    for name in pages:
        page, text = parse(site/name), (site/name).read_text()
        assert set(pages) <= set(page.links), f'{name}: the sidebar must link every page'
        assert page.title.strip() and '<h1 class="title">' in text, name
        assert 'generated from nbs/' in text, name
        assert '<span class="c1">#|' not in text, f'{name}: a directive line is shown in code'
    assert (site.parent/'README.md').read_text().startswith('<!-- generated from nbs/index.ipynb by docs/build.py')

def test_no_broken_links_or_images(site):
    assert broken(site) == []
    assert 'src="images/widget.png"' in (site/'index.html').read_text(), "the README's screenshot is on the index page"

def test_the_link_check_bites(site, tmp_path):
    "The check above would see a broken link, a missing anchor and a missing image."
    copy = tmp_path/'docs'
    shutil.copytree(site, copy)
    (copy/'images'/'widget.png').unlink()
    core = next(copy.glob('00_*.html'))
    core.write_text(core.read_text().replace('</main>', '<a href="99_nothing.html">x</a><a href="index.html#no-such">y</a></main>'))
    got = '\n'.join(broken(copy))
    assert "missing image 'images/widget.png'" in got and '99_nothing.html' in got and 'index.html#no-such' in got, got

def test_exported_definitions_show_as_show_doc(site):
    "The core page shows `breed_label`'s signature and docstring, not its source; hidden cells are gone."
    core = (site/'00_core.html').read_text()
    m = re.search(r'<h3 id="breed_label">breed_label.*?</h3>(.*?)</div>\s*</div>', core, re.S)
    assert m, 'no show_doc heading for breed_label'
    text = re.sub(r'<[^>]+>', '', m[1])
    assert re.search(r'def breed_label\(\s*fname', text), text
    assert 'Breed from a PETS file name' in text, text
    assert 'class="cell border-box-sizing code_cell rendered celltag_pb-showdoc"' in core
    assert 'BREED_RE.search' not in core, 'the exported source must not be shown'
    assert 'from fastcore.test import' not in core, 'a #| hide cell is shown'
    assert 'default_exp' not in core

def _png(colour) -> bytes:
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.new('RGB', (40, 30), colour).save(buf, format='PNG')
    return buf.getvalue()

def _directives(src:str) -> dict:
    d = {}
    for l in src.splitlines():
        if not l.strip(): continue
        m = re.match(r'\s*#\|\s*([\w-]+):?\s*(.*)', l)
        if not m: break
        d[m[1]] = m[2].strip()
    return d

def _shown(cell) -> bool:
    d = _directives(''.join(cell['source']))
    return not ({'hide', 'export', 'exporti', 'default_exp'} & d.keys()) and 'false' not in (d.get('include'), d.get('output'))

def stored_pngs(nb:Path, shown_only=True) -> list:
    "The PNG images stored in the outputs of `nb`'s cells (those a reader sees)."
    cells = json.loads(nb.read_text())['cells']
    return [base64.b64decode(''.join(o['data']['image/png'])) for c in cells if c['cell_type'] == 'code' and (_shown(c) or not shown_only)
            for o in c.get('outputs', []) if 'image/png' in o.get('data', {})]

def test_stored_plots_in_the_notebooks_are_shown(site):
    "Every image stored in a visible output of a notebook is a file of the site (none are stored yet: then vacuous)."
    figures = {p.read_bytes() for p in site.glob('figures/*')}
    for nb in notebooks():
        missing = [i for i, png in enumerate(stored_pngs(nb)) if png not in figures]
        assert not missing, f'{nb.name}: stored images {missing} are not in the site'

def test_stored_outputs_are_kept(tmp_path):
    """A plot, text and a table stored in a notebook appear on its page as they were stored (no cell is run again
    for the docs, not even one with an import); a plot in a `#| hide` cell does not."""
    nbs = tmp_path/'nbs'
    nbs.mkdir()
    shutil.copy(NBS/'index.ipynb', nbs)
    core = next(NBS.glob('00_*.ipynb'))
    nb = json.loads(core.read_text())
    code = [c for c in nb['cells'] if c['cell_type'] == 'code']
    shown, hidden = next(c for c in code if _shown(c)), next(c for c in code if 'hide' in _directives(''.join(c['source'])))
    plot, secret = _png((200, 30, 30)), _png((30, 30, 200))
    shown['outputs'] = [
        {'output_type': 'stream', 'name': 'stdout', 'text': ['a stored line of text\n']},
        {'output_type': 'display_data', 'metadata': {},
         'data': {'image/png': base64.b64encode(plot).decode(), 'text/plain': ['<Figure size 40x30>']}},
        {'output_type': 'execute_result', 'execution_count': 1, 'metadata': {},
         'data': {'text/html': ['<table class="stored"><tr><td>0.25</td></tr></table>'], 'text/plain': ['0.25']}}]
    hidden['outputs'] = [{'output_type': 'display_data', 'metadata': {},
                          'data': {'image/png': base64.b64encode(secret).decode(), 'text/plain': ['hidden']}}]
    # a visible cell with an import: nbdev's exec_show_docs would run it again and replace what it stored
    nb['cells'].insert(nb['cells'].index(shown) + 1, {
        'cell_type': 'code', 'execution_count': 2, 'metadata': {}, 'source': ['import math\n', 'print(math.pi * 1000)'],
        'outputs': [{'output_type': 'stream', 'name': 'stdout', 'text': ['a stored print, not run again\n']}]})
    (nbs/core.name).write_text(json.dumps(nb))
    site = build(tmp_path/'out', nbs)
    html = (site/f'{core.stem}.html').read_text()
    imgs = re.findall(r'<img [^>]*src="(figures/[^"]+\.png)"', html)
    assert [(site/i).read_bytes() for i in imgs] == [plot], imgs
    assert 'a stored line of text' in html and '<table class="stored">' in html
    assert 'a stored print, not run again' in html and '3141.59' not in html
    assert [b for b in broken(site) if not b.startswith('index.html:')] == []   # index links to notebooks not built here

def test_site_stays_small(site):
    size = sum(p.stat().st_size for p in site.rglob('*') if p.is_file())
    assert size < SITE_BUDGET, f'the site is {size/1e6:.1f} MB: store smaller plots in the notebooks'
