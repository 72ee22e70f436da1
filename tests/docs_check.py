"""The committed docs site (docs/) in Debian's Chromium, as a reader's browser gets it over HTTP on 127.0.0.1 and
from the file system (`open docs/index.html`), with every request elsewhere refused:

- the sidebar holds the topic groups in order (start, data, training, modes, prediction, deployment, tools,
  internals), every page once, and marks the page shown in its group;
- the search box finds `pets_dataloaders`: the first hit is its `show_doc` heading, and opening it lands on that
  heading of the page that documents it; a phrase finds the page of its topic; nonsense finds nothing;
- a link inside a docment (a parameter's comment in a signature) opens the local page at the linked definition;
- a page runs without a script error, and no text on it points at the nonexistent pet-breeds.github.io.

    .venv-browser/bin/python tests/docs_check.py        # tests/run.sh runs it after tests/browser_check.py
    .venv-browser/bin/python tests/docs_check.py DIR    # another build's site (`docs/build.py --out OUT`: OUT/docs)

Chromium is Debian's (`apt-get install chromium`), driven by Playwright from .venv-browser (no `playwright install`).
Ends with 'N passed, N failed'; exit 1 if any failed."""
import functools, http.server, re, shutil, sys, threading, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT/'docs'
GROUPS = ['start', 'data', 'training', 'modes', 'prediction', 'deployment', 'tools', 'internals']
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
                 '--no-first-run', '--disable-sync']

def check(cond, what):
    if not cond: raise AssertionError(what)

def page_defining(name:str) -> str:
    "The page whose show_doc heading is `name`, read from the site's files (not from the search index)."
    found = [p.name for p in sorted(SITE.glob('*.html')) if f'<h3 id="{name}"' in p.read_text(encoding='utf-8')]
    check(len(found) == 1, f'{name} should have one show_doc heading in the site: {found}')
    return found[0]

def opened(browser, base:str):
    "A new page that may load only from `base`, with its script errors collected in `page.errors`."
    page = browser.new_page(viewport={'width': 1200, 'height': 850})
    page.route(lambda url: not url.startswith(base), lambda route: route.abort())  # offline
    page.errors = []
    page.on('pageerror', lambda e: page.errors.append(str(e)))
    return page

def close_clean(page):
    "The page raised no script error while it was used; close it."
    check(page.errors == [], page.errors)
    page.close()

def in_view(locator) -> bool:
    return locator.evaluate('e => { const r = e.getBoundingClientRect(); return r.top >= -1 && r.top < innerHeight; }')

def sidebar(browser, base:str):
    "The groups in order, each page once, the shown page marked in its own group."
    from playwright.sync_api import expect
    page = opened(browser, base)
    page.goto(base + 'index.html')
    groups = page.locator('nav .nav-group')
    got = groups.evaluate_all('gs => gs.map(g => g.dataset.group)')
    check(got == GROUPS, f'sidebar groups {got}, want {GROUPS}')
    titles = groups.locator('.nav-title').all_inner_texts()
    check([t.strip().lower() for t in titles] == GROUPS, titles)
    hrefs = page.locator('nav .nav-group a').evaluate_all('as => as.map(a => a.getAttribute("href"))')
    pages = sorted(p.name for p in SITE.glob('*.html'))
    check(sorted(hrefs) == pages, f'the sidebar must link every page once: {sorted(set(pages) ^ set(hrefs))}')
    for group, stem in (('training', '20_train.archs'), ('internals', '01_core.atomic'), ('start', 'guide')):
        page.locator(f'nav a[href="{stem}.html"]').click()
        expect(page).to_have_url(base + f'{stem}.html')
        current = page.locator('nav a[aria-current="page"]')
        expect(current).to_have_count(1)
        check(current.evaluate('a => a.closest(".nav-group").dataset.group') == group, f'{stem} is not under {group}')
    close_clean(page)

def search(browser, base:str):
    "`pets_dataloaders` is found and its hit opens its show_doc; a phrase finds its page; nonsense finds nothing."
    from playwright.sync_api import expect
    target = page_defining('pets_dataloaders')
    page = opened(browser, base)
    page.goto(base + '71_bench.html')   # from a page far from the data notebooks
    box, hits = page.locator('#search'), page.locator('#search-results a')
    check(hits.count() == 0 and not page.locator('#search-results').is_visible(), 'results before typing')
    box.fill('pets_dataloaders')
    expect(hits.first).to_be_visible()
    first = hits.first
    check(first.get_attribute('href') == f'{target}#pets_dataloaders', f'first hit {first.get_attribute("href")}')
    check(first.locator('b').inner_text() == 'pets_dataloaders', first.inner_text())
    first.click()
    expect(page).to_have_url(base + f'{target}#pets_dataloaders')
    heading = page.locator('h3#pets_dataloaders')
    expect(heading).to_be_visible()
    check(in_view(heading), 'the page did not scroll to the pets_dataloaders heading')
    check(heading.locator('xpath=ancestor::*[contains(@class, "celltag_pb-showdoc")]').count() == 1, 'not a show_doc')
    # a phrase (two words, in any case) leads to the page of its topic; Enter opens the first hit
    box = page.locator('#search')
    box.fill('Red-team TABLE')
    expect(hits.first).to_be_visible()
    check(hits.first.get_attribute('href').startswith('safety.html'), hits.first.get_attribute('href'))
    box.press('Enter')
    expect(page).to_have_url(re.compile(re.escape(base + 'safety.html')))
    box = page.locator('#search')
    box.fill('zqxjkv')
    expect(page.locator('#search-results .none')).to_have_text('Nothing found')
    check(hits.count() == 0, 'nonsense found something')
    box.press('Escape')
    check(not page.locator('#search-results').is_visible(), 'Escape should close the results')
    close_clean(page)

def docment_link(browser, base:str):
    "On the page of `pets_dataloaders`, a docment's link (in a signature's comment) to another page opens it there."
    from playwright.sync_api import expect
    target = page_defining('pets_dataloaders')
    page = opened(browser, base)
    page.goto(base + target)
    check('pet-breeds.github.io' not in page.locator('main').inner_text(), 'a doc link names pet-breeds.github.io')
    links = page.locator('.celltag_pb-showdoc .highlight span.c1 a[href*=".html#"]')   # in signatures' comments
    check(links.count() > 0, f'{target}: no docment links to another page')
    within = page.locator('.celltag_pb-showdoc .highlight span.c1 a[href^="#"]')
    check(within.count() > 0, 'no docment links within the page')
    link = links.first
    href, name = link.get_attribute('href'), link.inner_text()
    dest, frag = href.split('#')
    check(dest != target and (SITE/dest).is_file(), f'{href}: not another local page')
    link.click()
    expect(page).to_have_url(base + href)
    defn = page.locator(f'[id="{frag}"]')
    expect(defn).to_be_visible()
    check(in_view(defn), f'{href}: not scrolled to')
    check(name.split('.')[-1].lower() in defn.inner_text().lower(), (name, defn.inner_text()))
    close_clean(page)

def from_files(browser, base:str):
    "Opened from the file system (no server): the search still works, since its index is a script, not a fetch."
    from playwright.sync_api import expect
    files = SITE.resolve().as_uri() + '/'
    target = page_defining('pets_dataloaders')
    page = opened(browser, files)
    page.goto(files + 'index.html')
    page.locator('#search').fill('pets_dataloaders')
    expect(page.locator('#search-results a').first).to_have_attribute('href', f'{target}#pets_dataloaders')
    page.locator('#search-results a').first.click()
    expect(page).to_have_url(files + f'{target}#pets_dataloaders')
    close_clean(page)

CHECKS = [sidebar, search, docment_link, from_files]

def main():
    from playwright.sync_api import sync_playwright
    exe = shutil.which('chromium')
    check(exe is not None, "Chromium not found: install Debian's with `apt-get install -y chromium`")
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Quiet, directory=str(SITE)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f'http://127.0.0.1:{srv.server_address[1]}/'
    passed = failed = 0
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
            try:
                for c in CHECKS:
                    t = time.monotonic()
                    try:
                        c(browser, base)
                        passed += 1
                        print(f"ok   {c.__name__} ({time.monotonic() - t:.0f} s)", flush=True)
                    except Exception as e:
                        failed += 1
                        print(f"FAIL {c.__name__} ({time.monotonic() - t:.0f} s): {e}", flush=True)
            finally: browser.close()
    finally:
        srv.shutdown()
        srv.server_close()
    print(f"docs_check: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)

if __name__ == '__main__': main()
