"`pet_breeds_bench` as a command, on a tiny synthetic folder: it runs, prints its table and writes every figure the README quotes."
import json, math, os, time
from conftest import run_cli
from pet_breeds.bench import project_recipe_minutes

KEYS = {'train_speedup_frozen', 'train_speedup_unfrozen', 'ceiling_ratio_unfrozen', 'predict_speedup',
        'projected_recipe_minutes', 'policy', 'machine', 'stock_frozen', 'stock_unfrozen', 'package_frozen',
        'package_unfrozen', 'ceiling_unfrozen', 'predict', 'package_frozen_train_bn', 'stock_valid', 'package_valid',
        'forward_ceiling', 'forward_ceiling_img_s', 'predict_ceiling_ratio', 'valid_ceiling_ratio'}

def test_bench_command_smoke(tmp_path):
    out = tmp_path/'bench.json'
    bs, batches = 8, 2
    t0 = time.perf_counter()
    r = run_cli('pet_breeds_bench', '--synthetic', '32', '--arch', 'resnet18', '--bs', bs, '--size', '64', '--item_size', '96',
                '--batches', batches, '--predict_images', '8', '--no_compile', '--figures', out)
    wall = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert KEYS <= set(res), KEYS - set(res)
    # what was asked is what was measured: 32 images (4 breeds of 8), resnet18 at 64 px in batches of 8, 2 timed batches
    assert res['settings'] == {**res['settings'], 'arch': 'resnet18', 'bs': bs, 'size': 64, 'item_size': 96,
                               'max_batches': batches, 'images': 32}
    assert res['machine']['cores'] == os.cpu_count() and res['machine']['torch_threads'] >= 1
    ok = lambda v: isinstance(v, (int, float)) and math.isfinite(v) and v > 0
    ram_mb = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**20
    train = ('stock_frozen', 'stock_unfrozen', 'package_frozen', 'package_frozen_train_bn', 'package_unfrozen')
    for k in (*train, 'ceiling_unfrozen'):
        assert ok(res[k]['train_img_s']) and 100 < res[k]['peak_mb'] < ram_mb, (k, res[k])
    for k in train: assert ok(res[k]['valid_img_s']), (k, res[k])
    p = res['predict']
    assert ok(p['batched_img_s']) and ok(p['per_image_img_s']) and 100 < p['per_image_peak_mb'] < ram_mb, p
    # the rates are images over seconds that really passed: each training figure timed `batches` full batches and each
    # validation figure the 6 validation images (20% of 32); all that time fits in the command's wall-clock time
    timed = sum(batches * bs / res[k]['train_img_s'] + int(0.2 * 32) / res[k]['valid_img_s'] for k in train)
    assert timed < wall, (timed, wall)
    # the ratios and the projection are computed from these figures
    ips = lambda k: res[k]['train_img_s']
    assert math.isclose(res['train_speedup_frozen'], ips('package_frozen') / ips('stock_frozen'))
    assert math.isclose(res['train_speedup_unfrozen'], ips('package_unfrozen') / ips('stock_unfrozen'))
    assert math.isclose(res['ceiling_ratio_unfrozen'], ips('package_unfrozen') / ips('ceiling_unfrozen'))
    assert math.isclose(res['predict_speedup'], p['batched_img_s'] / p['per_image_img_s'])
    fc = res['forward_ceiling']
    assert fc['compiled_img_s'] is None and fc['best_img_s'] == fc['plain_img_s'] == res['forward_ceiling_img_s'] > 0, fc
    assert math.isclose(res['predict_ceiling_ratio'], p['batched_img_s'] / fc['best_img_s'])
    assert math.isclose(res['valid_ceiling_ratio'], res['package_valid']['again_img_s'] / fc['plain_img_s'])
    # the package's second validation pass is served from the kept batches; stock fastai decodes again
    assert (res['stock_valid']['kept'], res['package_valid']['kept']) == (False, True), (res['stock_valid'], res['package_valid'])
    for who in ('stock', 'package'):
        v = res[f'{who}_valid']
        want = project_recipe_minutes(ips(f'{who}_frozen'), ips(f'{who}_unfrozen'), v['first_img_s'], 64, valid_again_img_s=v['again_img_s'])
        assert math.isclose(res['projected_recipe_minutes'][who], want), who
    # the printed table shows the same figures
    assert 'train, unfrozen epoch' in r.stdout and 'full recipe on PETS' in r.stdout, r.stdout
    assert f"resnet18 at 64 px, batch {bs}, 32 images" in r.stdout, r.stdout
    for k in (*train, 'ceiling_unfrozen'): assert f"{res[k]['train_img_s']:,.1f}" in r.stdout, (k, r.stdout)
    assert f"{p['per_image_img_s']:,.1f}" in r.stdout and f"{p['batched_img_s']:,.1f}" in r.stdout, r.stdout

def test_bench_rejects_data_and_synthetic_together(tmp_path):
    r = run_cli('pet_breeds_bench', '--data', tmp_path, '--synthetic', '8')
    assert r.returncode != 0 and 'pass --data or --synthetic, not both' in r.stderr, (r.returncode, r.stderr[-2000:])

def test_bench_deploy_measures_both_runtimes(tmp_path):
    "`--deploy`: per architecture, the exported files' sizes and the per-image latency of PyTorch and onnxruntime."
    out = tmp_path/'deploy.json'
    r = run_cli('pet_breeds_bench', '--deploy', '--archs', 'resnet18,efficientnet_lite0', '--predict_images', '2', '--figures', out)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    rows = {row['arch']: row for row in res['rows']}
    assert set(rows) == {'resnet18', 'efficientnet_lite0'} and res['images'] == 2
    assert rows['efficientnet_lite0']['weights'] == 'ImageNet' and rows['resnet18']['weights'] == 'random'
    # ResNet18 holds ~11.7M float32 weights (~45 MB), EfficientNet-Lite0 ~3.4M (~13 MB), in either file
    assert 40 < rows['resnet18']['onnx_mb'] < 50 and 10 < rows['efficientnet_lite0']['onnx_mb'] < 20, rows
    for row in rows.values():
        assert abs(row['onnx_mb'] - row['safetensors_mb']) < 2 and row['pytorch_ms'] > 0 and row['onnxruntime_ms'] > 0
        assert f"{row['arch']:<20}" in r.stdout

def test_bench_int8_compares_the_two_onnx_files(tmp_path, tiny_run):
    "`--int8 MODEL --data HELD_OUT`: model.int8.onnx against model.onnx on photos the model never saw, in the table and the JSON."
    import shutil
    from pet_breeds.deploy import export_onnx, quantize_onnx
    model, out = tmp_path/'model', tmp_path/'int8.json'
    shutil.copytree(tiny_run.model, model)
    export_onnx(model); quantize_onnx(model, tiny_run.data, n=16, min_agreement=0)   # a tiny model's near ties: any agreement
    r = run_cli('pet_breeds_bench', '--int8_model', model, '--data', tiny_run.held, '--bs', '4', '--figures', out)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res['photos'] == len([f for f in tiny_run.held.iterdir() if f.suffix == '.jpg']) > 0
    assert res['int8']['file_mb'] < 0.4 * res['fp32']['file_mb'] and 0 <= res['top1_agreement'] <= 1
    assert f"| top-1 agreement with fp32 |  | {res['top1_agreement']:.1%} |" in r.stdout, r.stdout
