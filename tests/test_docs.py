"""The documentation site as committed in docs/ (what readers open, and what tests/docs_check.py drives in Chromium):
a page per source, the sidebar's topic groups, no broken link or image, nbdev's doc links and docments resolved to the
local pages, the search index, exported definitions shown as `show_doc`, stored plots shown; and, in a build of its
own, stored outputs kept. The committed site is checked rather than a fresh build, which costs half a minute:
`docs/build.py --check` (tests/test_repo.py, on the run's one build) proves the committed README.md and docs/ are
what the build makes of nbs/ now, so together the two check the build."""
import base64, functools, json, re, shutil, sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit
import pytest
from conftest import build_docs

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
SITE_BUDGET = 5_000_000  # bytes: the site is committed, so it has to stay small
README_LINES = 160       # the README is a front door (issue 31): about 150 lines

build = build_docs   # conftest: the one way the tests build the site

@pytest.fixture(scope='module')
def site(): return ROOT/'docs'

@pytest.fixture(scope='module')
def builder():
    "docs/build.py as a module, for its small pure functions."
    sys.path.insert(0, str(ROOT/'docs'))
    try: import build as b
    finally: sys.path.remove(str(ROOT/'docs'))
    return b

def notebooks(nbs:Path=NBS) -> list: return [nbs/'index.ipynb', *sorted(nbs.glob('[0-9]*.ipynb'))]

def sources(nbs:Path=NBS) -> dict:
    "Page name -> source: every notebook, the markdown pages in nbs/pages, and CONTRIBUTING.md."
    res = {f'{p.stem}.html': p for p in notebooks(nbs)}
    res.update({f'{p.stem}.html': p for p in (nbs/'pages').glob('*.md')})
    res['contributing.html'] = ROOT/'CONTRIBUTING.md'
    return res

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

def test_a_page_per_source_with_nav_and_title(site):
    pages = sources()
    assert sorted(p.name for p in site.glob('*.html')) == sorted(pages)
    assert {'guide.html', 'speed.html', 'safety.html', 'benchmarks.html', 'contributing.html'} <= set(pages)
    assert not list(site.glob('*.md')), 'the old per-notebook markdown is gone'
    for name, src in pages.items():
        page, text = parse(site/name), (site/name).read_text()
        assert set(pages) <= set(page.links), f'{name}: the sidebar must link every page'
        assert page.title.strip() and '<h1 class="title">' in text, name
        m = re.search(r'<!-- generated from (\S+) by docs/build.py', text)
        assert m and (ROOT/m[1]).resolve() == src.resolve(), f'{name}: its first line must name its source {src}'
        assert '<span class="c1">#|' not in text, f'{name}: a directive line is shown in code'
    assert (site.parent/'README.md').read_text().startswith('<!-- generated from nbs/index.ipynb by docs/build.py')

GROUPS = ['start', 'data', 'training', 'modes', 'prediction', 'deployment', 'tools', 'internals']

def sidebar(path:Path) -> dict:
    "Group -> the page names its part of the sidebar links, in order."
    nav = re.search(r'<nav class="sidebar".*?</nav>', path.read_text(), re.S)[0]
    groups = re.findall(r'data-group="(\w+)">(.*?)</div>', nav, re.S)
    return {g: re.findall(r'<a href="([^"]+)"', body) for g, body in groups}

def test_the_sidebar_groups_pages_by_topic(site):
    "Every page has the same sidebar: the issue's groups in order, every page once, the notebooks by their topic word."
    groups = sidebar(site/'index.html')
    assert list(groups) == GROUPS
    flat = [p for ps in groups.values() for p in ps]
    assert sorted(flat) == sorted(p.name for p in site.glob('*.html')), 'every page once'
    assert groups['start'][:2] == ['index.html', 'guide.html'] and 'contributing.html' in groups['start']
    for name, group in (('00_core.html', 'internals'), ('01_core.atomic.html', 'internals'), ('13_data.html', 'data'),
                        ('20_train.archs.html', 'training'), ('26_train.html', 'training'),
                        ('43_modes.probe.html', 'modes'),
                        ('32_predict.inference.html', 'prediction'), ('51_deploy.html', 'deployment'),
                        ('60_tools.widget.html', 'tools'), ('71_bench.html', 'internals')):
        assert name in groups[group], f'{name} should be under {group}'
    for group, names in groups.items():   # a band's notebooks in their numbers' order
        numbered = [n for n in names if n[0].isdigit()]
        assert numbered == sorted(numbered), (group, numbered)
    for p in site.glob('*.html'):
        assert sidebar(p) == groups, f'{p.name}: another sidebar'
        assert re.search(rf'<a href="{re.escape(p.name)}" class="active" aria-current="page">', p.read_text()), p.name

def test_a_notebook_outside_the_topics_is_named(builder):
    assert builder.group(Path('nbs/45_modes.mymode.ipynb')) == 'modes'
    assert builder.group(Path('nbs/pages/x.md')) == 'start'
    with pytest.raises(ValueError, match="'misc'.*TOPICS"): builder.group(Path('nbs/45_misc.ipynb'))

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
    # index.html links to notebooks and pages not built here
    assert [b for b in broken(site) if not b.startswith('index.html:')] == []

def test_site_stays_small(site):
    size = sum(p.stat().st_size for p in site.rglob('*') if p.is_file())
    assert size < SITE_BUDGET, f'the site is {size/1e6:.1f} MB: store smaller plots in the notebooks'

def test_doc_links_and_docments_point_at_local_pages(site):
    """nbdev's doc links (to a site that does not exist) become links to these pages, in prose and in docments (the
    comments of a signature, where nbdev leaves them as markdown text); links to a notebook or page source too."""
    bad = [p.name for p in site.glob('*.html') if 'pet-breeds.github.io' in p.read_text()]
    assert bad == [], f'doc links to pet-breeds.github.io left in {bad}'
    data = (site/'13_data.html').read_text()
    docment = re.findall(r'<span class="c1">#[^<]*<a href="([^"#]*)#([^"]+)"><code>', data)
    assert any(page and page != '13_data.html' for page, _ in docment), docment   # to another page
    assert ('', 'pets_images_path') in docment, docment                           # and within the page
    for page, frag in docment: assert frag in parse(site/(page or '13_data.html')).ids, (page, frag)
    for p in site.glob('*.html'):
        local = [h for h in parse(p).links if not urlsplit(h).scheme and urlsplit(h).path.endswith(('.md', '.ipynb'))]
        assert local == [], f'{p.name}: links to sources, not pages: {local}'
    guide = (site/'guide.html').read_text()
    assert 'href="benchmarks.html#int8"' in guide and 'href="43_modes.probe.html"' in guide

def search_index(site:Path):
    "docs/search.js's pages ([name, title]) and entries ([page, heading id, heading, snippet, words])."
    js = (site/'search.js').read_text()
    pages = json.loads(re.search(r'^var PB_PAGES = (.*);$', js, re.M)[1])
    entries = json.loads(re.search(r'^var PB_INDEX = (\[.*?\n\]);$', js, re.M | re.S)[1])
    return pages, entries

def test_the_search_index_covers_every_page_and_definition(site):
    pages, entries = search_index(site)
    assert sorted(n for n, _ in pages) == sorted(p.name for p in site.glob('*.html'))
    for n, hid, head, snippet, words in entries:
        page = parse(site/pages[n][0])
        assert not hid or hid in page.ids, f'{pages[n][0]}#{hid}: no such anchor'
    heads = {(pages[n][0], hid): (head, words) for n, hid, head, _, words in entries}
    for p in site.glob('*.html'):   # every show_doc heading is an entry of its own
        for hid in re.findall(r'<h3 id="([^"]+)">', p.read_text()):
            assert (p.name, hid) in heads, f'{p.name}#{hid} is not in the search index'
    data = next(p.name for p in site.glob('*.html') if '<h3 id="pets_dataloaders">' in p.read_text())
    head, words = heads[(data, 'pets_dataloaders')]
    assert head == 'pets_dataloaders' and {'pets_dataloaders', 'valid_pct', 'seed'} <= set(words.split())
    red = [(page, w) for (page, _), (h, w) in heads.items() if h == 'Red-team table']
    assert red and red[0][0] == 'safety.html' and {'hostile', 'model', 'json'} <= set(red[0][1].split()), red
    assert all('<script src="search.js"></script>' in p.read_text() for p in site.glob('*.html'))
    assert re.search(r'<input id="search" type="search"', (site/'index.html').read_text())

def test_a_markdown_page_is_front_matter_and_sections(builder, tmp_path):
    "A page of nbs/pages: `# Title` and `> description` are its front matter; each `## ` section (not in code) a cell."
    md = tmp_path/'page.md'
    md.write_text('# A page\n\n> What it holds.\n\nIntro.\n\n'
                  '## One\n\n```sh\n## not a heading\n```\n\n## Two\n\ntext\n')
    nb = builder.read_md(md)
    assert [c.source for c in nb.cells] == ['# A page\n\n> What it holds.', 'Intro.',
                                            '## One\n\n```sh\n## not a heading\n```', '## Two\n\ntext']
    md.write_text('No title\n')
    with pytest.raises(ValueError, match='Title'): builder.read_md(md)

def test_the_readme_is_a_front_door():
    """README.md is short, holds the two commands, and links to the pages the rest moved to (each source exists);
    no dated measurements (they are on the benchmarks page)."""
    text = (ROOT/'README.md').read_text()
    assert len(text.splitlines()) <= README_LINES, f'README.md has {len(text.splitlines())} lines'
    assert 'pip install -e . && .venv/bin/pet_breeds_train --out runs/pets' in text and 'bash tests/run.sh' in text
    links = [l.split('#')[0] for l in re.findall(r'\]\(([^)\s]+)\)', text) if not re.match(r'\w+:', l)]
    assert [l for l in links if not (ROOT/l).exists()] == []
    for page in ('nbs/pages/guide.md', 'nbs/pages/speed.md', 'nbs/pages/safety.md', 'nbs/pages/benchmarks.md',
                 'CONTRIBUTING.md'):
        assert page in links, f'the README should link {page}'
    assert not re.search(r'20\d\d-\d\d-\d\d', text), 'a dated measurement in the README'
