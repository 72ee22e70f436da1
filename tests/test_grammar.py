"""Issue 31: one grammar for every command. Every console script that settings.ini declares exposes its parser
(`f.parser()`, from `pet_breeds.cli`), and all of them together must have: one option style (`--snake_case`, `--no_x`
negations), one meaning per name (`MEANINGS`), the same default for a name everywhere (the recipe's where it has one),
choices declared for a closed set (`cli.CLOSED_SETS`), `(default: ...)` in the help of every option with a value,
and no help that contradicts its flag. Each check is proved to catch its fault on a planted bad parser."""
import argparse, configparser, importlib, re
from pathlib import Path
import pytest
from pet_breeds.core import RECIPE
from pet_breeds.cli import CLOSED_SETS

ROOT = Path(__file__).resolve().parents[1]

# what each option shared by several commands means: a phrase its help must hold, and whether it takes a value
MEANINGS = {'data': ('folder', True), 'out': ('folder', True), 'k': ('per image', True), 'bs': ('batch size', True),
            'precision': ('fp32', True), 'arch': ('architecture', True), 'json': ('JSON object per line', False),
            'labels': ('CSV of file,label rows', True), 'trust_pickle': ('fastai export', False),
            'tta': ('mirror image', False), 'no_tta': ('--tta off', False), 'runtime': ('runs the model', True),
            'report': ('report folder', True), 'port': ('port', True), 'ip': ('address', True),
            'no_browser': ('browser', False), 'max_sessions': ('pages open at once', True), 'seed': ('seed', True),
            'folds': ('folds', True), 'overwrite': ('', False), 'size': ('size', True), 'item_size': ('resize', True),
            'model': ('model', True), 'label': ('predict', True), 'top': ('photos', True)}
PER_COMMAND_DEFAULT = {'out', 'report', 'model'}   # an output folder's name is the command's own

def console_scripts() -> dict:
    "Console script -> `module:function`, as settings.ini declares them."
    cfg = configparser.ConfigParser(delimiters=['='])
    cfg.read(ROOT/'settings.ini')
    lines = [l.strip() for l in cfg['DEFAULT']['console_scripts'].split('\n') if l.strip()]
    return dict(l.split('=', 1) for l in lines)

def parsers() -> dict:
    "Console script -> its argparse parser."
    out = {}
    for name, target in console_scripts().items():
        mod, fn = target.split(':')
        f = getattr(importlib.import_module(mod), fn)
        assert hasattr(f, 'parser'), f"{name}: {target} has no .parser(): declare it with pet_breeds.cli.command"
        out[name] = f.parser()
    return out

def options(p:argparse.ArgumentParser) -> list:
    "`(option name without --, action)` for each option of `p`, but --help."
    return [(s[2:], a) for a in p._actions for s in a.option_strings if s.startswith('--') and s != '--help']

def takes_value(a) -> bool: return a.nargs != 0

def problems(ps:dict) -> list:
    "Every breach of the grammar among the parsers `ps` (command -> parser), one line each."
    found, seen = [], {}
    for cmd, p in ps.items():
        for name, a in options(p):
            where = f"{cmd} --{name}"
            h = a.help or ''
            if not re.fullmatch(r'[a-z0-9]+(_[a-z0-9]+)*', name): found.append(f"{where}: not --snake_case")
            if re.search(r'--[a-z0-9]+-[a-z]', h): found.append(f"{where}: its help names a --kebab-case option")
            if name in CLOSED_SETS and a.choices is None: found.append(f"{where}: a closed set without choices")
            if isinstance(a, argparse._StoreFalseAction) and not name.startswith('no_'):
                found.append(f"{where}: a negation not spelt --no_x")
            if not takes_value(a) and re.search(r'\(default: (True|False)\)', h):
                found.append(f"{where}: a flag whose help says '(default: True/False)', not what it does")
            if isinstance(a, argparse._StoreFalseAction) and 'default:' not in h:
                found.append(f"{where}: a negation whose help does not say the default behaviour")
            if takes_value(a) and not a.required and a.option_strings:
                if a.default is not None and f'default: {a.default}' not in h:
                    found.append(f"{where}: help does not say its default, {a.default}")
                if a.default is None and 'default' not in h: found.append(f"{where}: help says no default")
            if name in MEANINGS:
                phrase, valued = MEANINGS[name]
                if phrase.lower() not in h.lower() or valued != takes_value(a):
                    found.append(f"{where}: does not mean what --{name} means elsewhere ({phrase!r}, "
                                 f"{'a value' if valued else 'a flag'})")
            if name in RECIPE.__dataclass_fields__ and a.default is not None and a.default != getattr(RECIPE, name):
                found.append(f"{where}: default {a.default!r} drifts from RECIPE.{name} = {getattr(RECIPE, name)!r}")
            seen.setdefault(name, []).append((cmd, a))
    for name, uses in seen.items():
        if len(uses) < 2: continue
        if name not in MEANINGS: found.append(f"--{name}: in {', '.join(c for c, _ in uses)}, with no entry in MEANINGS")
        defaults = {repr(a.default) for _, a in uses if a.default is not None}
        if len(defaults) > 1 and name not in PER_COMMAND_DEFAULT:
            found.append(f"--{name}: defaults drift between commands ({', '.join(sorted(defaults))})")
    return found

def test_every_command_follows_the_one_grammar():
    ps = parsers()
    assert {'pet_breeds', 'pet_breeds_clean', 'pet_breeds_undo'} <= set(ps)   # the listing and the cleaner's commands
    assert problems(ps) == []

def test_every_help_shows_the_defaults():
    for cmd, p in parsers().items():
        h = ' '.join(p.format_help().split())
        assert all(f'default: {a.default}' in ' '.join((a.help or '').split()) for _, a in options(p)
                   if takes_value(a) and a.default is not None), cmd
        if cmd != 'pet_breeds': assert '(default:' in h, cmd

def bad(prog, *adds) -> dict:
    "A planted parser with `adds`: `(option, kwargs)` pairs."
    p = argparse.ArgumentParser(prog=prog)
    for opt, kw in adds: p.add_argument(opt, **kw)
    return {prog: p}

GOOD_BS = ('--bs', dict(type=int, default=64, help='batch size (default: 64)'))

@pytest.mark.parametrize('planted,says', [
    (bad('x', ('--no-refit', dict(dest='refit', action='store_false', help='on the split only (default: all)'))), 'not --snake_case'),
    (bad('x', ('--tta', dict(action='store_true', help='neither --tta nor --no-tta: the default'))), '--kebab-case'),
    (bad('x', ('--precision', dict(default='auto', help='fp32 or bf16 (default: auto)'))), 'closed set without choices'),
    (bad('x', ('--no_pretrained', dict(dest='pretrained', action='store_false',
                                       help='start from ImageNet weights (default: True)'))), "'(default: True/False)'"),
    (bad('x', ('--pretrained_off', dict(dest='pretrained', action='store_false', help='random weights'))), 'not spelt --no_x'),
    (bad('x', ('--bs', dict(type=int, default=32, help='batch size (default: 32)'))), 'drifts from RECIPE.bs'),
    (bad('x', ('--bs', dict(type=int, default=64, help='batch size'))), 'help does not say its default'),
    (bad('x', ('--bs', dict(type=int, default=64, help='batch size (default: 32)'))), 'help does not say its default'),
    (bad('x', ('--int8', dict(help='a model path (default: none)'))), 'with no entry in MEANINGS'),
    (bad('x', ('--k', dict(type=int, default=9, help='top losses to show (default: 9)'))), 'does not mean what --k means'),
    (bad('x', ('--json', dict(help='write the figures to this file (default: none)'))), 'does not mean what --json means'),
    (bad('x', ('--port', dict(type=int, default=8000, help='port (default: 8000)'))), 'defaults drift between commands'),
])
def test_each_check_catches_its_fault_on_a_planted_parser(planted, says):
    ps = {**parsers(), **planted}
    if 'int8' in says or 'MEANINGS' in says:   # a name with a second meaning: two commands use it
        ps = {**ps, 'y': bad('y', ('--int8', dict(action='store_true', help='also write model.int8.onnx')))['y']}
    got = problems(ps)
    assert any(says in g for g in got), got

def test_old_spellings_still_work_with_a_notice(capsys):
    from pet_breeds import train_cli, deploy, sort_cli, interpret, bench_cli, data
    for f, argv, key, value, notice in [
            (train_cli.main, ['--no-pretrained'], 'pretrained', False, '--no-pretrained is now --no_pretrained'),
            (deploy.predict_main, ['m', 'x.jpg', '--onnx', '--no-tta'], 'runtime', 'onnx', '--onnx is now --runtime onnx'),
            (sort_cli.sort_main, ['m', 'in', 'out'], 'out', 'out', 'a positional OUT is now --out OUT'),
            (interpret.interpret_main, ['m', '--k', '4'], 'top_losses', 4, '--k is now --top_losses'),
            (bench_cli.bench_main, ['--json', 'f.json'], 'figures', 'f.json', '--json is now --figures'),
            (data.sample_main, ['--copy', 'dest'], 'out', 'dest', '--copy is now --out')]:
        assert f.command.parse(argv)[key] == value
        assert notice in capsys.readouterr().err, f.prog

def test_export_writes_onnx_by_default(monkeypatch, tmp_path):
    "ONNX goes into MODEL by default; --space alone leaves MODEL as it is (its model is exported in a copy)."
    from pet_breeds import deploy
    class Called(BaseException): pass   # not an Exception: the command's error handling lets it through
    def called(name):
        def f(*a, **k): raise Called(name)
        return f
    monkeypatch.setattr(deploy, 'export_onnx', called('onnx'))
    monkeypatch.setattr(deploy, 'export_space', called('space'))
    monkeypatch.setattr(deploy, 'torch_available', lambda: True)
    space = str(tmp_path/'space')
    for argv, first in ((['m'], 'onnx'), (['m', '--space', space], 'space'), (['m', '--onnx', '--space', space], 'onnx')):
        with pytest.raises(Called) as e: deploy.export_main(argv)
        assert e.value.args[0] == first, argv
