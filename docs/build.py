"""Build README.md and the HTML documentation site in docs/ from the notebooks, the nbdev way, without Quarto
(which cannot be installed here). Run it with the project's venv:

    .venv/bin/python docs/build.py              # write README.md and the site in docs/
    .venv/bin/python docs/build.py --check      # exit 1 if README.md or the site is out of date (tests/test_repo.py)
    .venv/bin/python docs/build.py --out DIR    # write DIR/README.md and DIR/docs/ instead (tests/test_docs.py)

The pages come from, found when the build runs: `nbs/index.ipynb` (the home page, and README.md), the
markdown pages in `nbs/pages/` (guide, speed, safety, benchmarks: prose and tables with no code to run, so
markdown, which reads and diffs better than notebook JSON; each starts with `# Title` and `> description`, as a
notebook's first cell does), `CONTRIBUTING.md` (the contributing page) and every `nbs/[0-9]*.ipynb`. The site:
`docs/index.html`, `docs/NN_name.html` per numbered notebook, `docs/PAGE.html` per markdown page,
`docs/contributing.html`, `docs/style.css`, `docs/search.js` and `docs/figures/` with the images stored in the
notebooks' outputs (plots), extracted as they are. Every page has a title and description (from the `# title` and
`> description`), the notebook as readers should see it, and a sidebar:
- the pages grouped by topic (start, data, training, modes, prediction, deployment, tools, internals), a
  notebook by the topic word of its name (`20_train.archs` -> `train` -> training; `TOPICS`), the other pages
  under start;
- a search box over every page: `docs/search.js` holds an index (one entry per heading, show_doc headings
  included: its id, its text, the start of its section and the section's distinct words) and a few lines that
  rank the entries for the words typed. A script, not a JSON fetch, so it works from file:// too; nothing is
  loaded from elsewhere.

Each notebook goes through nbdev's own processors (`nbdev.processors.FilterDefaults().procs()`, run by
`nbdev.process.NBProcessor`, as `nbdev_proc_nbs` does before Quarto renders): `FrontmatterProc`,
`add_show_docs` + `exec_show_docs` (each exported definition is shown as `show_doc`: signature and
docstring, not its source), `rm_export`, `hide_`, `hide_line`, `filter_stream_`, `strip_ansi`,
`clean_show_doc`, `clean_magics`, `add_links` (backticked names link to their `show_doc`) and the rest.
One change to nbdev's pipeline: `exec_show_docs` re-runs every visible cell that contains an import,
replacing the outputs stored in it (or failing, when the cell uses a name an earlier cell made). Here
such a cell keeps its stored outputs and only its import statements run; exported and `show_doc` cells
run as in nbdev. What Quarto would then do with the cell options the processors leave (`echo: false`,
`output: asis`, `include`, `output`, `code-fold`) is done here, and nbconvert's HTMLExporter (template
`basic`) converts each notebook; links to a notebook or page source (`NN_name.ipynb`, `guide.md`,
`../../CONTRIBUTING.md`) become links to its page, nbdev's doc links (to `doc_host`, a site that does not
exist) point at these pages, in prose and in docments (where nbdev leaves them as markdown inside a
signature's comments), and files a notebook links to under docs/ (the README's `docs/images/widget.png`)
are linked relative to the site. README.md is the same processed index.ipynb, as markdown.

The output is deterministic (no timestamps or random ids; hash randomisation is turned off), so
`--check` compares bytes. `docs/images/` is not generated: `docs/images/widget.png` is the widget's
screenshot, which tests/browser_check.py writes only when asked to:

    PET_BREEDS_UPDATE_SCREENSHOT=1 .venv-browser/bin/python tests/browser_check.py RUN
"""
import argparse, ast, copy, functools, hashlib, html, multiprocessing, os, re, shutil, sys, warnings
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
NBS, DOCS = ROOT/'nbs', ROOT/'docs'
FIGURES = 'figures'  # the site's folder for images from the notebooks' outputs: all of it is generated
NOTE = 'generated from {} by docs/build.py: edit {}, not this file'

def note(src:Path) -> str:
    "The line at the top of a generated file: its source (`nbs/NB.ipynb`, `nbs/pages/PAGE.md`, `CONTRIBUTING.md`)."
    if src.parent.name == 'pages': rel = f'nbs/pages/{src.name}'
    else: rel = f'nbs/{src.name}' if src.suffix == '.ipynb' else src.name
    return NOTE.format(rel, 'the notebook' if src.suffix == '.ipynb' else 'that file')

from execnb.nbio import nb2dict, read_nb
from nbdev.config import get_config
from nbdev.process import NBProcessor
from nbdev.processors import FilterDefaults, exec_show_docs, insert_warning, _do_eval, _is_showdoc

# ---------------------------------------------------------------------------------------------- nbdev
class exec_show_docs_keep(exec_show_docs):
    """nbdev's `exec_show_docs`, except that a cell that is neither exported nor a `show_doc` keeps the outputs
    stored in the notebook and runs only its import statements (nbdev would re-run all of it for the docs)."""
    def __call__(self, cell):
        if cell.cell_type != 'code' or not getattr(self.nb, 'has_docs_', None) or not hasattr(self, 'k'): return
        if _is_showdoc(cell) or cell.directives_.keys() & {'export', 'exports', 'exporti', 'exec_doc'}:
            return super().__call__(cell)
        if not _do_eval(cell): return
        imports = [ast.unparse(o) for o in cell.parsed_() if isinstance(o, (ast.Import, ast.ImportFrom))]
        if not imports: return
        self.k.run('\n'.join(imports))
        if self.k.exc: raise Exception(f"Error in cell {cell.idx_} (its imports):\n{cell.source}") from self.k.exc

def read_md(path:Path):
    """A markdown page as a notebook of markdown cells, as Quarto reads a `.md` page beside the notebooks: its first
    lines, `# Title` and `> description`, are the front matter cell; each `## ` section is a cell after it."""
    from execnb.nbio import dict2nb
    lines = path.read_text(encoding='utf-8').splitlines(keepends=True)
    if not lines or not lines[0].startswith('# '): raise ValueError('a page starts with its `# Title` line')
    i = 1
    while i < len(lines) and (not lines[i].strip() or lines[i].startswith('>')): i += 1
    cells, fence = [lines[:i], []], False
    for line in lines[i:]:
        if line.startswith('```'): fence = not fence
        if not fence and line.startswith('## ') and cells[-1]: cells.append([])
        cells[-1].append(line)
    nb = dict2nb({'cells': [{'cell_type': 'markdown', 'metadata': {}, 'source': ''.join(c).strip('\n')}
                            for c in cells if ''.join(c).strip()], 'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5})
    nb['path_'] = str(path)
    return nb

def nbdev_process(path:Path):
    "The notebook (or markdown page) at `path` after nbdev's processors, as `nbdev_proc_nbs` leaves it for Quarto."
    procs = [exec_show_docs_keep if p is exec_show_docs else p for p in FilterDefaults().procs()]
    nb = read_md(path) if path.suffix == '.md' else read_nb(path)
    os.environ['IN_TEST'] = '1'  # as nbdev's serve_drv sets it
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='Found cells containing imports')  # handled above
            NBProcessor(nb=nb, procs=procs).process()
    finally: del os.environ['IN_TEST']
    nb.metadata.pop('widgets', None)  # the build's own widget state: random ids, and nothing a page shows
    return nb

# --------------------------------------------------------------------------------------------- quarto
_re_opt = re.compile(r'^\s*#\|\s*([\w-]+)\s*:\s*(.*?)\s*$')
# pandoc's link attributes, as show_doc writes them: [source](url){target="_blank" style="..."}
_re_attr_link = re.compile(r'\[([^\]\n]*)\]\(([^)\s]+)\)\{([^}\n]*)\}')
_re_address = re.compile(r' at 0x[0-9a-fA-F]+')

def _attr_links(md:str) -> str:
    return _re_attr_link.sub(lambda m: f'<a href="{html.escape(m[2])}" {m[3]}>{m[1]}</a>', md)

def _is_false(v) -> bool: return str(v).strip().strip('"\'').lower() == 'false'

def quarto_view(nb):
    "What Quarto does with the cells nbdev's processors leave: cell options applied, front matter taken out."
    cells, nb.summaries_ = [], []  # code-fold summaries, in the order of the folded cells
    for c in nb.cells:
        if c.cell_type == 'raw': continue  # the front matter FrontmatterProc inserted; nb.frontmatter_ has it
        if c.cell_type == 'markdown':
            if c.source.strip() == insert_warning.content: continue  # the page and README say so in their own words
            c.source = _attr_links(c.source)
            if c.source.strip(): cells.append(c)
            continue
        lines, opts = c.source.splitlines(), {}
        while lines and _re_opt.match(lines[0]):
            k, v = _re_opt.match(lines.pop(0)).groups()
            opts[k] = v
        c.source = '\n'.join(lines).strip('\n')
        if _is_false(opts.get('include')): continue
        if _is_false(opts.get('output')): c.outputs = []
        for o in c.get('outputs', []):
            data = o.get('data', {})
            if 'text/markdown' in data:
                md = ''.join(data['text/markdown'])
                if getattr(c, 'has_sd', False): md = _re_address.sub('', md)  # built here: no memory addresses
                data['text/markdown'] = _attr_links(md)
        if _is_false(opts.get('echo')) or not c.source.strip():
            c.metadata['transient'] = {'remove_source': True}
        if opts.get('code-fold', 'false').lower() in ('true', 'show') and c.source.strip():
            c.metadata['tags'] = [*c.metadata.get('tags', []), 'pb-fold' + ('-open' if opts['code-fold'] == 'show' else '')]
            nb.summaries_.append(opts.get('code-summary', 'Code').strip('"\''))
        if getattr(c, 'has_sd', False): c.metadata['tags'] = [*c.metadata.get('tags', []), 'pb-showdoc']
        if c.source.strip() or c.get('outputs'): cells.append(c)
    nb.cells = cells
    return nb

def to_nbformat(nb):
    import json, nbformat
    d = nb2dict(nb)
    for c in d['cells']: c.pop('id', None)  # not shown, and cells the processors made have none: nbformat
    d['nbformat'], d['nbformat_minor'] = 4, 4  # 4.5 would give them random ones
    d['metadata'].setdefault('language_info', {'name': 'python'})  # jupytext-made notebooks lack it: code fences need it
    return nbformat.reads(json.dumps(d), as_version=4)

# ----------------------------------------------------------------------------------------- converters
_PRIORITY = ['text/html', 'text/markdown', 'image/svg+xml', 'text/latex', 'image/png', 'image/jpeg', 'text/plain']
_EXTRACT = {'image/png', 'image/jpeg', 'image/svg+xml', 'image/gif'}

def _config(**kw):
    from traitlets.config import Config
    return Config({'NbConvertBase': {'display_data_priority': _PRIORITY},
                   'ExtractOutputPreprocessor': {'enabled': True, 'extract_output_types': _EXTRACT}, **kw})

@functools.lru_cache(None)
def exporter(cls, **kw):
    "One nbconvert exporter of each kind for the whole build (making one costs a second)."
    from nbconvert.preprocessors import ExtractOutputPreprocessor
    exp = cls(config=_config(), **kw)
    if not any(isinstance(p, ExtractOutputPreprocessor) for p in exp._preprocessors):
        exp.register_preprocessor(ExtractOutputPreprocessor, enabled=True)
    return exp

def convert(nbn, exporter_cls, key:str, **kw):
    "Text and `{figures/file: bytes}` of the notebook `nbn` converted by nbconvert's `exporter_cls`."
    exp = exporter(exporter_cls, **kw)
    text, res = exp.from_notebook_node(copy.deepcopy(nbn), resources={'unique_key': key, 'output_files_dir': FIGURES})
    figures = {}
    for name, data in sorted(res.get('outputs', {}).items(), key=lambda o: -len(o[0])):
        # named by content: the same plot shown twice is one file, and a cell added above leaves the names alone
        new = f'{FIGURES}/{key}_{hashlib.sha1(data).hexdigest()[:12]}{Path(name).suffix}'
        text, figures[new] = text.replace(name, new), data
    return text, figures

def md_inline(s:str) -> str:
    "Markdown of one line (a description) as inline HTML."
    from nbconvert.filters.markdown_mistune import markdown2html_mistune
    res = markdown2html_mistune(s).strip()
    return res[3:-4] if res.startswith('<p>') and res.endswith('</p>') else res

def doc_prefix() -> str:
    "Where nbdev's doc links point: https://HOST/BASEURL/."
    cfg = get_config()
    return cfg.doc_host.rstrip('/') + '/' + cfg.doc_baseurl.strip('/') + '/'

def nbdev_html_name(stem:str) -> str:
    "The page name nbdev's doc links use for notebook `stem` (`00_core` -> `core.html`)."
    return re.sub(r'^\d+[a-zA-Z0-9]*_', '', stem.lower()) + '.html'

# ------------------------------------------------------------------------------------------------ html
def slug(text:str) -> str:
    "Pandoc's (and so Quarto's and nbdev's doc links') identifier for a heading."
    s = re.sub(r'[^\w\s.-]', '', text.strip().lower(), flags=re.UNICODE)
    s = re.sub(r'\s+', '-', s)
    s = re.sub(r'^[^a-z]+', '', s)
    return s or 'section'

CSS = """\
*{box-sizing:border-box}
body{margin:0;font:16px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#212529;background:#fff}
a{color:#2761e3;text-decoration:none}a:hover{text-decoration:underline}
.sidebar{position:fixed;top:0;left:0;bottom:0;width:230px;overflow-y:auto;padding:1.2rem 1rem;background:#f8f9fa;border-right:1px solid #dee2e6}
.sidebar .brand{display:block;font-weight:600;font-size:1.2rem;color:#212529;margin-bottom:1rem}
.sidebar ul{list-style:none;margin:0;padding:0}.sidebar li a{display:block;padding:.25rem .5rem;border-radius:4px;color:#495057}
.nav-group{margin:.2rem 0 .6rem}.nav-title{margin:.4rem 0 .15rem;padding:0 .5rem;font-size:.75rem;font-weight:700;letter-spacing:.05em;text-transform:uppercase;color:#868e96}
.search{position:relative;margin-bottom:.8rem}.search input{width:100%;padding:.35rem .55rem;border:1px solid #ced4da;border-radius:4px;font:inherit;font-size:.92rem}
#search-results{max-height:60vh;overflow-y:auto;margin-top:.2rem;background:#fff;border:1px solid #dee2e6;border-radius:6px;box-shadow:0 4px 14px rgba(0,0,0,.12)}
#search-results li a{display:block;padding:.4rem .6rem;border-radius:0;color:#212529;border-bottom:1px solid #f1f3f5}
#search-results li a:hover,#search-results li a:focus{background:#e7eefc;text-decoration:none}
#search-results .page{margin-left:.5rem;font-size:.8rem;color:#6c757d}#search-results small{display:block;color:#6c757d;font-size:.78rem;line-height:1.3}
#search-results .none{padding:.4rem .6rem;color:#6c757d}
.sidebar li a.active{background:#e7eefc;color:#2761e3;font-weight:600}
main{margin-left:230px;padding:1.5rem 2.5rem 4rem;max-width:1060px}
.title{margin:.2rem 0 .3rem;font-size:2.2rem}.description{font-size:1.15rem;color:#6c757d;margin:0 0 1.5rem}
h2{margin-top:2.2rem;padding-bottom:.2rem;border-bottom:1px solid #dee2e6}
.anchor-link{visibility:hidden;margin-left:.3rem;color:#adb5bd}h1:hover .anchor-link,h2:hover .anchor-link,h3:hover .anchor-link,h4:hover .anchor-link{visibility:visible}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.88em;background:#f1f3f5;padding:.05em .25em;border-radius:3px}
pre{overflow-x:auto;padding:.6rem .8rem;margin:.4rem 0;background:#f8f9fa;border-radius:4px;font-size:.86rem;line-height:1.45}
pre code{background:none;padding:0}
.input_area pre{background:#f6f8fa;border-left:3px solid #c5d3ee}
.output_area pre{background:none;border-left:3px solid #e9ecef}
.output_stderr pre{background:#fff5f5}
.output_area img{max-width:100%;height:auto}
table{border-collapse:collapse;margin:.6rem 0;font-size:.92rem}th,td{border:1px solid #dee2e6;padding:.25rem .6rem}th{background:#f8f9fa}
blockquote{margin:.5rem 0;padding:.1rem 1rem;border-left:4px solid #dee2e6;color:#495057}
.celltag_pb-showdoc{margin:1rem 0;padding:0 1rem .4rem;border:1px solid #dee2e6;border-radius:6px;box-shadow:0 1px 2px rgba(0,0,0,.05)}
.celltag_pb-showdoc hr{display:none}.celltag_pb-showdoc h3{margin:.7rem 0 .4rem;font-family:ui-monospace,Menlo,Consolas,monospace}
details>summary{cursor:pointer;color:#6c757d;font-size:.9rem}
.highlight .c,.highlight .c1,.highlight .cm,.highlight .ch,.highlight .cs{color:#6a737d;font-style:italic}
.highlight .k,.highlight .kn,.highlight .kc,.highlight .kd,.highlight .kr,.highlight .ow{color:#d73a49}
.highlight .s,.highlight .s1,.highlight .s2,.highlight .sa,.highlight .sd,.highlight .si,.highlight .se{color:#032f62}
.highlight .m,.highlight .mi,.highlight .mf{color:#005cc5}.highlight .nf,.highlight .nc{color:#6f42c1}
.highlight .nb,.highlight .bp{color:#005cc5}.highlight .nd{color:#e36209}
.ansi-red-fg{color:#c62828}.ansi-green-fg{color:#2e7d32}.ansi-yellow-fg{color:#9a6700}.ansi-blue-fg{color:#1565c0}
.ansi-cyan-fg{color:#00838f}.ansi-bold{font-weight:bold}
@media (max-width:800px){.sidebar{position:static;width:auto;border-right:0;border-bottom:1px solid #dee2e6}main{margin-left:0;padding:1rem}}
"""

PAGE = """\
<!DOCTYPE html>
<!-- {note} -->
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} – {site}</title>
<link rel="stylesheet" href="style.css">
</head>
<body>
<nav class="sidebar" aria-label="Pages">
<a class="brand" href="index.html">{site}</a>
<div class="search" role="search">
<input id="search" type="search" placeholder="Search" aria-label="Search the pages" autocomplete="off">
<ul id="search-results" hidden></ul>
</div>
{nav}
</nav>
<main>
<header>
<h1 class="title">{title}</h1>
{description}</header>
{body}
</main>
<script src="search.js"></script>
</body>
</html>
"""

# The sidebar's groups, in order, and the topic word of a notebook's name (`20_train.archs` -> `train`) that puts
# it in one. Pages that are not numbered notebooks (index.ipynb, nbs/pages/*.md, CONTRIBUTING.md) are `start`.
GROUPS = {'start': 'Start', 'data': 'Data', 'training': 'Training', 'modes': 'Modes', 'prediction': 'Prediction',
          'deployment': 'Deployment', 'tools': 'Tools', 'internals': 'Internals'}
TOPICS = {'core': 'internals', 'data': 'data', 'train': 'training', 'modes': 'modes', 'predict': 'prediction',
          'deploy': 'deployment', 'tools': 'tools', 'bench': 'internals'}
START_ORDER = ['index', 'guide', 'speed', 'safety', 'benchmarks']  # then the other pages by name, then contributing

def group(src:Path) -> str:
    "The sidebar group of the page made from `src`."
    if not re.match(r'\d', src.name): return 'start'
    m = re.match(r'\d+[a-zA-Z]?_([a-zA-Z]+)', src.stem)
    if m is None or m[1].lower() not in TOPICS:
        raise ValueError(f"its topic word ({m and m[1]!r}) is none of {sorted(TOPICS)}: name it NN_topic.name.ipynb, "
                         "or add the topic to TOPICS in docs/build.py")
    return TOPICS[m[1].lower()]

def prepare(nb_path:Path) -> dict:
    """The slow part of a page, alone so that worker processes make the pages side by side: nbdev's processors and
    nbconvert's HTML, with the title, description and code-fold summaries."""
    from nbconvert import HTMLExporter
    nb = nbdev_process(nb_path)
    fm = nb.frontmatter_ or {}
    nbn = to_nbformat(quarto_view(nb))
    body, figures = convert(nbn, HTMLExporter, nb_path.stem, template_name='basic', exclude_input_prompt=True,
                            exclude_output_prompt=True)
    return dict(title=str(fm.get('title') or nb_path.stem), description=str(fm.get('description') or ''), nbn=nbn,
                summaries=list(nb.summaries_), body=body, figures=figures)

def _failure(src:Path, e:Exception) -> str:
    "The message that names the source `src` and what failed in it."
    cause = f'\n{type(e.__cause__).__name__}: {e.__cause__}' if e.__cause__ else ''
    return f'docs/build.py: {_src_name(src)}: {e}{cause}'

def _prepared(nb_path:Path):
    "`prepare(nb_path)`, or `_failure`'s message (an exception may not pickle back from a worker)."
    try: return prepare(nb_path)
    except Exception as e: return _failure(nb_path, e)

def prepare_all(srcs:list, n:int) -> list:
    """`_prepared` of each of `srcs`, in `n` forked processes, a share each (the same settings, hash seed and folder;
    forked, not pooled: nbdev's shell replaces `__main__`, where a pool would look the function up)."""
    if n < 2: return [_prepared(s) for s in srcs]
    ctx, shares, readers, procs = multiprocessing.get_context('fork'), [srcs[i::n] for i in range(n)], [], []
    for share in shares:
        reader, writer = ctx.Pipe(duplex=False)
        procs.append(ctx.Process(target=lambda share=share, writer=writer: writer.send([_prepared(s) for s in share])))
        procs[-1].start()
        readers.append(reader)
    done = {}
    for share, reader in zip(shares, readers): done.update(zip(share, reader.recv()))   # before join: a full pipe
    for p in procs: p.join()
    return [done[s] for s in srcs]

class Page:
    """One notebook's (or markdown page's) page: its processed notebook (nbformat's), name, title, sidebar group and
    HTML (a BeautifulSoup tree until written)."""
    def __init__(self, nb_path:Path, prepared:dict=None):
        self.src, self.name = nb_path, f'{nb_path.stem.lower()}.html'
        self.group = group(nb_path)
        d = prepared or prepare(nb_path)
        self.title, self.description, self.nbn, self.summaries = d['title'], d['description'], d['nbn'], d['summaries']
        self.body, self.figures = d['body'], d['figures']

    def render(self):
        from bs4 import BeautifulSoup
        soup = BeautifulSoup(self.body, 'html.parser')
        seen = {'title'}
        for h in soup.find_all(re.compile('^h[1-6]$')):
            a = h.find('a', class_='anchor-link')
            if a: a.extract()
            hid = base = slug(h.get_text())
            n = 0
            while hid in seen: n += 1; hid = f'{base}-{n}'
            seen.add(hid)
            h['id'] = hid
            if a: a['href'] = f'#{hid}'; h.append(a)
        for cell, summary in zip(soup.select('.celltag_pb-fold, .celltag_pb-fold-open'), self.summaries):
            inp = cell.find('div', class_='input')
            if inp is None: continue
            det = soup.new_tag('details', attrs={'open': ''} if 'celltag_pb-fold-open' in cell['class'] else {})
            summ = soup.new_tag('summary'); summ.string = summary
            inp.wrap(det); det.insert(0, summ)
        self.soup, self.ids = soup, seen
        return self

    def html(self, pages:list) -> str:
        nav = []
        for key, label in GROUPS.items():
            members = [p for p in pages if p.group == key]
            if not members: continue
            items = '\n'.join(f'<li><a href="{p.name}"' + (' class="active" aria-current="page"' if p is self else '')
                              + f'>{html.escape(p.title)}</a></li>' for p in members)
            nav.append(f'<div class="nav-group" data-group="{key}">\n<p class="nav-title">{label}</p>\n'
                       f'<ul>\n{items}\n</ul>\n</div>')
        nav = '\n'.join(nav)
        desc = f'<p class="description">{md_inline(self.description)}</p>\n' if self.description else ''
        return PAGE.format(note=note(self.src), title=html.escape(self.title), site=html.escape(pages[0].title),
                           nav=nav, description=desc, body=str(self.soup).strip())

def _resolve_local(ref:str, base:Path, nbs:Path):
    """The file a relative link in a page means: beside the page's source, else in the notebooks folder, else from
    the repository root (the README's view, which index.ipynb's links to `docs/images/` take)."""
    for d in (base, nbs, ROOT):
        p = (d/ref).resolve()
        if p.exists(): return p
    return None

_re_md_link = re.compile(r'\[(`?)([^\]`\n]+)\1\]\((\S+?)\)')

def _docment_links(page:Page, resolve):
    """nbdev's doc links inside code: a docment (the comment after a parameter in a signature) holds them as markdown
    text, `[`name`](https://HOST/BASEURL/page.html#name)`; each becomes a link to this site's page, or the bare name."""
    from bs4 import NavigableString
    prefix = doc_prefix()
    for s in [s for s in page.soup.find_all(string=re.compile(re.escape(prefix))) if s.parent.name != 'a']:
        parts, last = [], 0
        for m in _re_md_link.finditer(s):
            href = resolve(m[3]) if m[3].startswith(prefix) else m[3]
            parts.append(NavigableString(s[last:m.start()]))
            if href is None: parts.append(NavigableString(m[2]))
            else:
                a = page.soup.new_tag('a', href=href)
                a.append(page.soup.new_tag('code')); a.code.string = m[2]
                parts.append(a)
            last = m.end()
        parts.append(NavigableString(s[last:]))
        for p in parts: s.insert_before(p)
        s.extract()

def fix_links(page:Page, pages:list, nbs:Path, extra:dict):
    "Links and images as the site needs them. `extra` collects files copied into the site ({figures/name: bytes})."
    by_name = {p.name: p for p in pages}
    by_src = {p.src.resolve(): p for p in pages}
    nbdev_names = {nbdev_html_name(p.src.stem): p for p in pages if re.match(r'\d', p.src.name)}
    nbdev_names['index.html'] = pages[0]
    prefix, cfg = doc_prefix(), get_config()
    def doc_link(url):
        "This site's link for nbdev's doc link `url`, or None where no page shows that name."
        path, _, frag = url[len(prefix):].partition('#')
        target = nbdev_names.get(path)
        if target is None or (frag and frag not in target.ids): return None
        return (target.name if target is not page else '') + (f'#{frag}' if frag else '')
    _docment_links(page, doc_link)
    for tag, attr in (('a', 'href'), ('img', 'src')):
        for el in page.soup.find_all(tag):
            url = el.get(attr)
            if not url: continue
            if url.startswith(prefix):  # nbdev's doc link: this site's page for that notebook
                href = doc_link(url)
                if href is None: el.unwrap()  # a name with no show_doc: keep the text
                else: el[attr] = href
                continue
            parts = urlsplit(url)
            if parts.scheme or parts.netloc or url.startswith('#') or not parts.path: continue
            path, frag = parts.path, f'#{parts.fragment}' if parts.fragment else ''
            if path in by_name or path.startswith(FIGURES + '/'): continue
            local = _resolve_local(path, page.src.parent, nbs)
            if local in by_src: el[attr] = by_src[local].name + frag; continue  # a notebook or page source: its page
            if path.endswith('.ipynb'): el[attr] = Path(path).stem.lower() + '.html' + frag; continue
            if local is None: continue  # broken: tests/test_docs.py reports it
            if local.is_relative_to(DOCS): el[attr] = local.relative_to(DOCS).as_posix() + frag
            elif tag == 'img':
                name = f'{FIGURES}/{local.name}'
                extra[name] = local.read_bytes()
                el[attr] = name
            elif local.is_relative_to(ROOT):
                el[attr] = f"{cfg.git_url.rstrip('/')}/blob/{cfg.branch}/{local.relative_to(ROOT).as_posix()}{frag}"

# ---------------------------------------------------------------------------------------------- search
SNIPPET = 160  # characters of a section's text shown under a search hit

def search_entries(page:Page, n:int) -> list:
    """The search index's entries for `page` (its number `n` in the site): one per heading, with the heading's id,
    its text, the start of the section's text and the section's distinct words (lowercase); the text before the
    first heading is an entry for the page itself."""
    from bs4 import NavigableString, Tag
    entries, skip = [[n, '', page.title, []]], set()
    for el in page.soup.descendants:
        if isinstance(el, Tag) and re.fullmatch('h[1-6]', el.name) and el.get('id'):
            text = el.get_text(' ', strip=True).rstrip('¶').strip()
            entries.append([n, el['id'], text, [text]])
            skip.update(id(t) for t in el.find_all(string=True))
        elif isinstance(el, NavigableString) and id(el) not in skip and el.parent.name not in ('style', 'script'):
            if el.strip(): entries[-1][3].append(el.strip())
    res = []
    for n, hid, title, texts in entries:
        text = ' '.join(texts)
        words = ' '.join(dict.fromkeys(w for w in re.findall(r'\w+', text.lower()) if len(w) > 1))
        body = ' '.join(texts[1:] if hid else texts)
        snippet = re.sub(r'\s+', ' ', body)[:SNIPPET]
        if words or not hid: res.append([n, hid, title, snippet, words])
    return res

SEARCH_JS = r"""
(function () {
  // the search box in the sidebar: every term must start a word of a section (or be in its heading); headings
  // that are the term itself (a function's show_doc) come first
  var box = document.getElementById('search'), list = document.getElementById('search-results');
  if (!box || !list) return;
  function terms(q) { return q.toLowerCase().match(/\w+/g) || []; }
  function score(e, ts) {
    var head = e[2].toLowerCase(), words = ' ' + e[4] + ' ', page = PB_PAGES[e[0]][1].toLowerCase(), total = 0;
    for (var i = 0; i < ts.length; i++) {
      var t = ts[i], s = 0;
      if (head === t) s = 100;
      else if ((' ' + head.split(/[^\w]+/).join(' ') + ' ').indexOf(' ' + t + ' ') >= 0) s = 40;
      else if (head.indexOf(t) >= 0) s = 20;
      if (s < 10 && page.indexOf(t) >= 0) s = 10;
      if (s < 5 && words.indexOf(' ' + t + ' ') >= 0) s = 5;
      if (s < 2 && words.indexOf(' ' + t) >= 0) s = 2;
      if (!s) return 0;
      total += s;
    }
    return total + (e[1] ? 0 : 1);
  }
  function show() {
    var ts = terms(box.value);
    list.innerHTML = '';
    if (!ts.length) { list.hidden = true; return; }
    var hits = [];
    for (var i = 0; i < PB_INDEX.length; i++) { var s = score(PB_INDEX[i], ts); if (s) hits.push([s, i]); }
    hits.sort(function (a, b) { return b[0] - a[0] || a[1] - b[1]; });
    hits.slice(0, 12).forEach(function (h) {
      var e = PB_INDEX[h[1]], li = document.createElement('li'), a = document.createElement('a');
      a.href = PB_PAGES[e[0]][0] + (e[1] ? '#' + e[1] : '');
      var b = document.createElement('b'); b.textContent = e[2]; a.appendChild(b);
      if (e[1]) {
        var p = document.createElement('span'); p.className = 'page'; p.textContent = PB_PAGES[e[0]][1]; a.appendChild(p);
      }
      var m = document.createElement('small'); m.textContent = e[3]; a.appendChild(m);
      li.appendChild(a); list.appendChild(li);
    });
    if (!hits.length) {
      var li = document.createElement('li'); li.className = 'none'; li.textContent = 'Nothing found'; list.appendChild(li);
    }
    list.hidden = false;
  }
  box.addEventListener('input', show);
  list.addEventListener('click', function () { list.hidden = true; });   // a hit on this page only scrolls
  box.addEventListener('keydown', function (ev) {
    if (ev.key === 'Enter') { var a = list.querySelector('a'); if (a) a.click(); }
    if (ev.key === 'Escape') { box.value = ''; show(); }
  });
})();
"""

def search_js(pages:list) -> str:
    "docs/search.js: the index of every page's sections and the search box's code (a script, so it works from file://)."
    import json
    index = [e for n, p in enumerate(pages) for e in search_entries(p, n)]
    dump = lambda o: json.dumps(o, ensure_ascii=False, separators=(',', ':'))
    return (f'// {NOTE.format("the notebooks and pages", "them")}\n'
            f'var PB_PAGES = {dump([[p.name, p.title] for p in pages])};\n'
            'var PB_INDEX = [\n' + ',\n'.join(dump(e) for e in index) + '\n];\n' + SEARCH_JS.lstrip())

# ---------------------------------------------------------------------------------------------- readme
def _readme_links(body:str, nbs:Path) -> str:
    "Relative links and images of index.ipynb (written from nbs/) as the README at the repository root needs them."
    def fix(m):
        ref = m[2]
        if re.match(r'\w+:|#|/', ref): return m[0]
        path, _, frag = ref.partition('#')
        local = (nbs/path).resolve()
        if not local.exists() or not local.is_relative_to(ROOT): return m[0]  # already from the root (docs/images/...)
        return m[1] + local.relative_to(ROOT).as_posix() + (f'#{frag}' if frag else '')
    return re.sub(r'(\]\(|src=")([^)"\s]+)', fix, body)

def readme(index:Page, nbs:Path) -> str:
    "README.md: the processed index notebook as markdown, with nbdev's doc links as plain names."
    from nbconvert import MarkdownExporter
    body, _ = convert(index.nbn, MarkdownExporter, index.src.stem)
    prefix = re.escape(doc_prefix())
    body = re.sub(rf'\[(`[^`\n]+`)\]\({prefix}[^)\s]*\)', r'\1', body)
    body = re.sub(rf'(\]\(|src=")({FIGURES}/)', r'\1docs/\2', body)
    body = _readme_links(body, nbs)
    body = re.sub(r'\n{3,}', '\n\n', body)
    head = f'# {index.title}\n\n' + (f'> {index.description}\n\n' if index.description else '')
    return f'<!-- {note(index.src)} -->\n\n' + head + body.strip() + '\n'

# ----------------------------------------------------------------------------------------------- build
def notebooks(nbs:Path=NBS) -> list:
    """The site's sources, in the sidebar's order within each group: index.ipynb, the markdown pages of `nbs`/pages
    (guide, speed, safety, benchmarks, then any other by name), CONTRIBUTING.md, and every numbered notebook."""
    pages = sorted((nbs/'pages').glob('*.md'), key=lambda p: (START_ORDER.index(p.stem) if p.stem in START_ORDER
                                                              else len(START_ORDER), p.stem))
    contributing = [ROOT/'CONTRIBUTING.md'] if (ROOT/'CONTRIBUTING.md').is_file() else []
    return [nbs/'index.ipynb', *pages, *contributing, *sorted(nbs.glob('[0-9]*.ipynb'))]

def _src_name(p:Path) -> Path: return p.relative_to(ROOT) if p.is_relative_to(ROOT) else p

def targets(nbs:Path=NBS) -> dict:
    "Relative output path -> bytes: README.md and everything under docs/ that the build makes."
    os.chdir(ROOT)  # nbdev reads settings.ini from here
    srcs = notebooks(nbs)
    prepared = prepare_all(srcs, min(2, os.cpu_count() or 1))
    failed = [d for d in prepared if isinstance(d, str)]
    if failed: raise SystemExit(failed[0])
    pages = []
    for p, d in zip(srcs, prepared):
        try: pages.append(Page(p, d).render())
        except Exception as e: raise SystemExit(_failure(p, e)) from e
    names = [p.name for p in pages]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash: raise SystemExit(f'docs/build.py: two sources make each of {clash}: rename one')
    res, extra = {'README.md': readme(pages[0], nbs).encode()}, {}
    for page in pages: fix_links(page, pages, nbs, extra)
    for page in pages:
        res[f'docs/{page.name}'] = page.html(pages).encode()
        res.update({f'docs/{k}': v for k, v in page.figures.items()})
    res.update({f'docs/{k}': v for k, v in extra.items()})
    res['docs/style.css'] = CSS.encode()
    res['docs/search.js'] = search_js(pages).encode()
    return res

def stale(root:Path, res:dict) -> list:
    "Generated files under `root`/docs that this build no longer makes (old pages, figures, the old docs/*.md)."
    d = root/'docs'
    found = [*d.glob('*.md'), *d.glob('*.html'), *d.glob('*.js'), *(d/FIGURES).glob('**/*')]
    return sorted(p.relative_to(root).as_posix() for p in found if p.is_file() and p.relative_to(root).as_posix() not in res)

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--check', action='store_true', help='exit 1 if README.md or docs/ is out of date; write nothing')
    ap.add_argument('--out', type=Path, help='write OUT/README.md and OUT/docs/ (with docs/images) instead of the tree')
    ap.add_argument('--nbs', type=Path, default=NBS, help='the notebooks folder (default: nbs/)')
    a = ap.parse_args(argv)
    res = targets(a.nbs.resolve())
    out = a.out.resolve() if a.out else ROOT
    if a.check:
        bad = [k for k, v in res.items() if not (out/k).is_file() or (out/k).read_bytes() != v] + stale(out, res)
        if bad: print('out of date (run .venv/bin/python docs/build.py):', *bad, sep='\n  ')
        return 1 if bad else 0
    for k in stale(out, res): (out/k).unlink()
    for k, v in res.items():
        (out/k).parent.mkdir(parents=True, exist_ok=True)
        if not (out/k).is_file() or (out/k).read_bytes() != v: (out/k).write_bytes(v)
    if out != ROOT and (DOCS/'images').is_dir(): shutil.copytree(DOCS/'images', out/'docs'/'images', dirs_exist_ok=True)
    print(f'wrote README.md and {sum(k.startswith("docs/") for k in res)} files in docs/ under {out}')
    return 0

if __name__ == '__main__':
    if os.environ.get('PYTHONHASHSEED') != '0':  # set reprs in signatures must not change from run to run
        os.execve(sys.executable, [sys.executable, __file__, *sys.argv[1:]], {**os.environ, 'PYTHONHASHSEED': '0'})
    sys.exit(main())
