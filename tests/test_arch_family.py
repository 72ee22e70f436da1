"""Issue 30: an architecture family is one object in one notebook. A toy family, registered here from a test module,
trains, cuts, exports (safetensors and ONNX), loads, classifies ImageNet's 1000 classes and is benched through the
package's own paths, and the lists derived from the registry take it in, with no file of the package edited."""
import json
from collections import OrderedDict
import numpy as np, pytest, torch
from torch import nn
from torchvision import transforms as T
from safetensors.torch import save_file, load_file
from fastai.vision.learner import default_split, model_meta
from conftest import run_cli
from pet_breeds.core import WeightsNotFound, open_image
from pet_breeds.archs import (ARCHS, FAMILIES, ArchFamily, WeightsSource, register_family, unregister_family,
                              get_arch, hub_checkpoints, arch_stats, family_examples, imagenet_net)

TOY_STATS = ([0.5] * 3, [0.25] * 3)

class ToyWeights(WeightsSource):
    "The toy's 'ImageNet' weights: one safetensors file in the torch hub folder, put there by hand."
    name = 'toy file'
    def offline_file(self, arch): return hub_checkpoints()/'toynet.safetensors'
    def weights_here(self, arch): return self.offline_file(arch).exists()
    def ensure_weights(self, arch):
        if not self.weights_here(arch):
            raise WeightsNotFound(f"the toy's weights are not here: put them in {self.offline_file(arch)}, "
                                  "or train from random weights: --no_pretrained")
        return self.offline_file(arch)

def toynet(pretrained:bool=False) -> nn.Sequential:
    "An ImageNet-shaped network in miniature: two conv blocks, pooling, a 1000-class classifier."
    net = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 8, 3, stride=2, padding=1), bn1=nn.BatchNorm2d(8), relu1=nn.ReLU(),
        conv2=nn.Conv2d(8, 16, 3, stride=2, padding=1), bn2=nn.BatchNorm2d(16), relu2=nn.ReLU(),
        pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), fc=nn.Linear(16, 1000)))
    if pretrained: net.load_state_dict(load_file(ToyWeights().ensure_weights(None)))
    return net

def toy_layers(arch, pretrained:bool) -> list: return list(arch.model(pretrained).named_children())[:6]

def toy_imagenet(arch) -> tuple:
    tfm = T.Compose([T.Resize(40), T.CenterCrop(32), T.ToTensor(), T.Normalize(*TOY_STATS)])
    return arch.model(pretrained=True), tfm

TOY = ArchFamily('toy', {'toynet': (toynet, 32, 0.0002)}, ToyWeights(), toy_layers, toy_imagenet,
                 meta={'cut': None, 'split': default_split, 'stats': TOY_STATS}, min_size=16)

@pytest.fixture
def toy(offline):
    "The toy family, registered for one test, its torch hub folder empty; taken out of the registry afterwards."
    register_family(TOY)
    try: yield TOY
    finally: unregister_family('toy')

def put_weights() -> dict:
    "Write the toy's 'ImageNet' weights where its source looks; return them."
    torch.manual_seed(0)
    sd = {k: v.contiguous() for k, v in toynet().state_dict().items()}
    dest = TOY.source.offline_file(None)
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, dest)
    return sd

def run_train(sample_dir, out, *args):
    # no --yes: the run's estimate reads the family's own GFLOP figure, tiny for the toy
    return run_cli('pet_breeds_train', '--data', sample_dir, '--out', out, '--arch', 'toynet', '--size', '32',
                   '--item_size', '48', '--bs', '16', '--lr', '1e-2', *args)

def train(sample_dir, out, *args):
    r = run_train(sample_dir, out, *args)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads((out/'metrics.json').read_text())

def test_the_registry_takes_the_toy_in_and_lets_it_go(toy):
    assert get_arch('toynet').family is TOY and FAMILIES['toy'] is TOY and get_arch('toynet').size == 32
    assert family_examples()[-1] == 'toynet' and 'toynet' in family_examples(onnx=True)
    from pet_breeds.deploy_bench import deploy_archs
    assert deploy_archs()[-1] == 'toynet'
    assert model_meta[toynet] is TOY.meta and arch_stats('toynet') == TOY_STATS
    unregister_family('toy')
    assert 'toynet' not in ARCHS and 'toy' not in FAMILIES and toynet not in model_meta
    assert 'toynet' not in family_examples()
    register_family(TOY)
    off = register_family(ArchFamily('toy_no_onnx', {'toynet_x': (toynet, 32, 0.0002)}, ToyWeights(), onnx=False))
    try:
        assert 'toynet_x' in family_examples() and 'toynet_x' not in family_examples(onnx=True)
        assert 'toynet_x' not in deploy_archs()
    finally: unregister_family(off.name)

def test_the_toy_trains_through_the_command_exports_and_loads(toy, sample_dir, tmp_path):
    r = run_train(sample_dir, tmp_path/'x', '--mode', 'finetune', '--freeze_epochs', '1', '--epochs', '1')
    assert r.returncode != 0 and 'Traceback' not in r.stderr, r.stderr[-3000:]
    assert str(TOY.source.offline_file(None)) in r.stderr and '--no_pretrained' in r.stderr
    put_weights()
    m = train(sample_dir, tmp_path/'run', '--mode', 'finetune', '--freeze_epochs', '1', '--epochs', '1')
    assert m['settings']['arch'] == 'toynet' and m['mode'] == 'finetune' and len(m['epochs']) == 2
    assert f"toynet ({TOY.source.offline_file(None)})" in m['weights']
    folder = tmp_path/'run'/'model'
    meta = json.loads((folder/'model.json').read_text())
    assert (meta['arch'], meta['pretrained']) == ('toynet', True)
    assert meta['normalize'] == {'mean': TOY_STATS[0], 'std': TOY_STATS[1]}   # the family's meta reached vision_learner
    from pet_breeds.inference import load_model
    from pet_breeds.deploy import export_onnx
    from pet_breeds.runtime import OnnxModel
    pm = load_model(folder, precision='fp32')
    photos = sorted(sample_dir.glob('*_1*.jpg'))[:6]
    expected = pm.probs([open_image(f) for f in photos]).numpy()
    assert expected.shape == (6, len(m['vocab']))
    export_onnx(folder, loaded=pm)
    got = OnnxModel.load(folder).probs([open_image(f) for f in photos])
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)

def test_the_learner_starts_from_the_toys_weights(toy, sample_dir):
    from pet_breeds.data import pets_dataloaders
    from pet_breeds.learner import pets_learner
    sd = put_weights()
    learn = pets_learner(pets_dataloaders(sample_dir, bs=16, item_size=48, size=32, num_workers=0), 'toynet')
    conv1, bn2 = learn.model[0][0], learn.model[0][4]   # fastai's body numbers the toy's layers
    assert torch.equal(conv1.weight, sd['conv1.weight']) and not conv1.weight.requires_grad
    assert bn2.weight.requires_grad   # fastai's frozen body still trains batch norm

def test_the_toy_cuts_through_the_command(toy, sample_dir, tmp_path):
    from pet_breeds.cut import cut_layers, cut_body
    from pet_breeds.inference import load_model
    assert cut_layers('toynet') == ['conv1', 'bn1', 'relu1', 'conv2', 'bn2', 'relu2']
    sd = put_weights()
    assert torch.equal(cut_body('toynet', 'relu1').conv1.weight, sd['conv1.weight'])
    m = train(sample_dir, tmp_path/'cut', '--mode', 'cut', '--cut_layer', 'relu1', '--epochs', '1')
    assert m['settings']['cut_layer'] == 'relu1'
    meta = json.loads((tmp_path/'cut'/'model'/'model.json').read_text())
    assert (meta['mode'], meta['arch'], meta['cut_layer']) == ('cut', 'toynet', 'relu1')
    pm = load_model(tmp_path/'cut'/'model')
    assert [n for n, _ in pm.model[0].body.named_children()] == ['conv1', 'bn1', 'relu1']
    assert torch.equal(pm.model[0].body.conv1.weight.cpu(), sd['conv1.weight'])   # the frozen part: never trained
    assert pm.predict(sample_dir/'Bengal_10.jpg', k=1)[0][0] in m['vocab']

def test_the_toy_classifies_imagenet_and_is_benched(toy, sample_dir):
    from pet_breeds.imagenet import imagenet_classifier
    from pet_breeds.deploy_bench import run_deploy
    with pytest.raises(WeightsNotFound, match='toynet.safetensors'): imagenet_net('toynet')
    put_weights()
    clf = imagenet_classifier('toynet', device='cpu')
    p = clf.probs([open_image(sample_dir/'Bengal_10.jpg')])
    assert p.shape == (1, 1000) and len(clf.topk(p[0], 3)) == 3
    row = run_deploy(sample_dir, ['toynet'], n_images=2, repeat=1)['rows'][0]
    assert (row['arch'], row['weights'], row['size']) == ('toynet', 'ImageNet', 32)
    assert row['onnx_mb'] > 0 and row['pytorch_ms'] > 0 and row['onnxruntime_ms'] > 0
