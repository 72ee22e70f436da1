"Reading order is import order: a module imports only the modules of lower-numbered notebooks."
import ast, re
from pathlib import Path

LIB = Path(__file__).resolve().parents[1]/'pet_breeds'
SOURCE = re.compile(r'File to edit: \.\./nbs/(\d+)_\w+\.ipynb')

def notebook_numbers(lib:Path=LIB) -> dict:
    "Module name -> the number of the notebook it is exported from."
    res = {}
    for py in lib.glob('*.py'):
        m = SOURCE.search(py.read_text()[:400])
        if m: res[py.stem] = int(m.group(1))
    return res

def package_imports(py:Path) -> set:
    "Names of the pet_breeds modules `py` imports anywhere (module level or inside functions)."
    found = set()
    for node in ast.walk(ast.parse(py.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1: found |= {node.module} if node.module else {a.name for a in node.names}
            elif node.module == 'pet_breeds': found |= {a.name for a in node.names}
            elif node.module and node.module.startswith('pet_breeds.'): found.add(node.module.split('.')[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split('.')[1] for a in node.names if a.name.startswith('pet_breeds.')}
    return found

def layering_violations(lib:Path=LIB) -> list:
    numbers = notebook_numbers(lib)
    return [f"{mod} (notebook {n:02d}) imports {imp} (notebook {numbers[imp]:02d})"
            for mod, n in sorted(numbers.items()) for imp in sorted(package_imports(lib/f'{mod}.py'))
            if imp in numbers and numbers[imp] >= n and imp != mod]

def test_every_module_comes_from_a_numbered_notebook():
    numbers = notebook_numbers()
    assert {'core', 'data', 'learner', 'train', 'cut', 'inference', 'cli'} <= set(numbers)
    assert numbers['core'] == 0 and numbers['cut'] < numbers['inference'], numbers

def test_no_module_imports_a_later_notebook():
    assert layering_violations() == []

def test_the_check_sees_a_late_import(tmp_path):
    "A copy of the library whose inference.py imports the CLI module (a later notebook) inside a function is caught."
    for py in LIB.glob('*.py'): (tmp_path/py.name).write_text(py.read_text())
    with open(tmp_path/'inference.py', 'a') as f: f.write('\ndef _late():\n    from .cli import train_pets\n')
    assert layering_violations(tmp_path) == ['inference (notebook 05) imports cli (notebook 09)']
