"A pretrained network cut at a named layer: Keras names, the seed's parameter counts, frozen cut part, export."
import json
from pathlib import Path
import pytest, torch, torchvision
from torch import nn
from pet_breeds.core import WeightsNotFound, UnknownChoice, open_image
from pet_breeds.data import pets_dataloaders
from pet_breeds.archs import ensure_weights, hub_checkpoints, family_examples
from pet_breeds.cut import (cut_layers, cut_body, cut_model, seed_head, param_summary, param_table, cut_learner,
                            train_cut, FrozenBody)
from pet_breeds.inference import export_model, load_model
from pet_breeds.train import TrainSpec
from conftest import copy_photos

KERAS_VGG16 = ['block1_conv1', 'block1_conv2', 'block1_pool', 'block2_conv1', 'block2_conv2', 'block2_pool',
               'block3_conv1', 'block3_conv2', 'block3_conv3', 'block3_pool', 'block4_conv1', 'block4_conv2',
               'block4_conv3', 'block4_pool', 'block5_conv1', 'block5_conv2', 'block5_conv3', 'block5_pool']

def test_vgg_layers_have_keras_names():
    assert cut_layers('vgg16') == KERAS_VGG16
    assert cut_layers('vgg19')[9:12] == ['block3_conv4', 'block3_pool', 'block4_conv1']

def test_vgg16_cut_has_keras_output_shapes():
    "Keras VGG16 at 300 px: block1_pool (150, 150, 64), block3_pool (37, 37, 256), block5_pool (9, 9, 512)."
    x = torch.zeros(1, 3, 300, 300)
    with torch.no_grad():
        assert cut_body('vgg16', 'block1_pool', pretrained=False)(x).shape == (1, 64, 150, 150)
        assert cut_body('vgg16', 'block3_pool', pretrained=False)(x).shape == (1, 256, 37, 37)
        assert cut_body('vgg16', 'block5_pool', pretrained=False)(x).shape == (1, 512, 9, 9)

def test_the_seeds_parameter_counts():
    """The seed's model.summary() for 4 classes at 300 px: 424,708 total, 385,860 trainable,
    38,848 non-trainable. PyTorch keeps BatchNorm's moving mean/variance as buffers, not parameters."""
    s = param_summary(cut_model('vgg16', 'block1_pool', 4, pretrained=False), show=False)
    assert (s['total'], s['trainable'], s['frozen']) == (424_580, 385_860, 38_720)
    assert s['bn_stats'] == 128
    assert (s['keras_total'], s['keras_trainable'], s['keras_non_trainable']) == (424_708, 385_860, 38_848)

def test_param_table_rows_add_up():
    m = cut_model('vgg16', 'block1_pool', 4, pretrained=False)
    t = param_table(m)
    assert int(t.trainable.sum() + t.frozen.sum()) == sum(p.numel() for p in m.parameters())
    assert list(t.layer[:2]) == ['0.body.block1_conv1.0', '0.body.block1_conv2.0']
    assert t.set_index('layer').loc['1.bn', 'bn_stats'] == 128

def test_seed_head_layers():
    h = seed_head(37, in_channels=64)
    assert [type(m).__name__ for m in h] == ['Conv2d', 'ReLU', 'MaxPool2d', 'Conv2d', 'ReLU', 'MaxPool2d',
                                             'AdaptiveAvgPool2d', 'Flatten', 'Linear', 'ReLU', 'BatchNorm1d', 'Linear']
    assert h(torch.zeros(2, 64, 75, 75)).shape == (2, 37)
    assert h.pool1(torch.zeros(1, 1, 75, 75)).shape[-1] == 38    # Keras padding='same': rounds up

def test_unknown_layer_lists_the_choices():
    with pytest.raises(UnknownChoice, match='block5_pool'): cut_body('vgg16', 'fc1', pretrained=False)
    with pytest.raises(UnknownChoice, match='layer4'): cut_body('resnet18', 'layer7', pretrained=False)

@pytest.mark.parametrize('arch,layer,channels', [('resnet18', 'layer2', 128), ('inception_v3', 'Mixed_5d', 288),
                                                 ('xception', 'block4', 728), ('efficientnet_lite0', 'blocks.10', 112)])
def test_other_archs_cut_at_their_module_names(arch, layer, channels):
    m = cut_model(arch, layer, 3, pretrained=False).eval()
    assert param_summary(m, show=False)['frozen'] > 0
    assert m[0].body(torch.zeros(1, 3, 96, 96)).shape[1] == channels
    assert m(torch.zeros(2, 3, 96, 96)).shape == (2, 3)

@pytest.mark.parametrize('arch', family_examples())
def test_every_family_cuts_halfway(arch):
    "Every family of the registry: cut halfway along its layers, named as `cut_layers` says, frozen, new layers on top."
    names = cut_layers(arch)
    half = len(names) // 2
    m = cut_model(arch, names[half], 3, pretrained=False).eval()
    assert [n for n, _ in m[0].body.named_children()] == [n.replace('.', '_') for n in names[:half + 1]]
    assert param_summary(m, show=False)['frozen'] > 0 and not any(p.requires_grad for p in m[0].parameters())
    with torch.no_grad(): assert m(torch.zeros(2, 3, 96, 96)).shape == (2, 3)

def test_cut_resnet_is_the_resnet_up_to_that_layer():
    r = torchvision.models.resnet18().eval()
    body = cut_body('resnet18', 'layer3', pretrained=False)
    body.load_state_dict({k: v for k, v in r.state_dict().items() if not k.startswith(('layer4', 'fc'))})
    seen = {}
    r.layer3.register_forward_hook(lambda m, i, o: seen.update(out=o))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad(): r(x); torch.testing.assert_close(body.eval()(x), seen['out'])

def test_lite_cut_keeps_the_pypi_imagenet_weights():
    body = cut_body('efficientnet_lite0', 'blocks.5')
    ref = torch.load(ensure_weights('efficientnet_lite0'), map_location='cpu', weights_only=True)
    assert torch.equal(body.stem[0].weight, ref['_conv_stem.weight'])
    assert torch.equal(body.blocks_5._project_conv.weight, ref['_blocks.5._project_conv.weight'])
    assert torch.equal(body.blocks_5._bn2.running_mean, ref['_blocks.5._bn2.running_mean'])


def test_missing_vgg16_weights_name_the_plain_vgg16_file(offline):
    with pytest.raises(WeightsNotFound) as e: cut_body('vgg16', 'block1_pool', pretrained=True)
    msg = str(e.value)
    assert 'vgg16-397923af.pth' in msg and str(hub_checkpoints()) in msg and '--no_pretrained' in msg

def test_cached_vgg16_weights_are_loaded_into_the_keras_layers(offline):
    "A file where the error says is used (here VGG16's convolutional weights, made up, without the big classifier)."
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs['D'])
    sd = {f'features.{k}': v for k, v in features.state_dict().items()}
    dest = hub_checkpoints()/'vgg16-397923af.pth'
    dest.parent.mkdir(parents=True)
    torch.save(sd, dest)
    body = cut_body('vgg16', 'block2_conv1', pretrained=True)
    assert torch.equal(body.block1_conv1[0].weight, sd['features.0.weight'])
    assert torch.equal(body.block2_conv1[0].bias, sd['features.5.bias'])

@pytest.fixture(scope='module')
def few_pets(tmp_path_factory):
    return copy_photos(tmp_path_factory.mktemp('cut')/'images', 8)

def _state(m): return {k: v.clone() for k, v in m.state_dict().items()}

@pytest.mark.parametrize('arch,layer,size', [('vgg16', 'block1_pool', 32), ('efficientnet_lite0', 'blocks.5', 64)])
def test_training_changes_only_the_new_layers(few_pets, arch, layer, size):
    "Weights and batch-norm statistics of the cut part stay as they were (the Lite cut has batch norm)."
    dls = pets_dataloaders(few_pets, bs=8, item_size=size, size=size, num_workers=0)
    learn = cut_learner(dls, arch, layer, pretrained=arch != 'vgg16')
    cut0, head0 = _state(learn.model[0]), _state(learn.model[1])
    assert not any(p.requires_grad for p in learn.model[0].parameters())
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(1, 1e-2)
    cut1, head1 = learn.model[0].state_dict(), learn.model[1].state_dict()
    moved = [k for k, v in cut0.items() if not torch.equal(v, cut1[k])]
    assert moved == [], moved
    assert all(not torch.equal(v, head1[k]) for k, v in head0.items() if v.is_floating_point())

def test_train_cut_record_and_lr_find(few_pets, tmp_path):
    dls = pets_dataloaders(few_pets, bs=8, item_size=32, size=32, num_workers=0)
    learn, run = train_cut(dls, TrainSpec('vgg16', pretrained=False, epochs=2, options={'cut_layer': 'block1_pool'},
                                          lr_find_fname=tmp_path/'lr.png', lr_find_its=10))
    assert [(r['stage'], r['epoch']) for r in run['epochs']] == [(1, 0), (1, 1)]
    assert set(run['epochs'][0]) == {'stage', 'epoch', 'train_loss', 'valid_loss', 'error_rate', 'accuracy', 'seconds'}
    assert run['lr'] == run['lr_find']['valley'] and (tmp_path/'lr.png').exists()
    assert len(run['batch_losses']) == 2 * 2 and {'stages', 'total_seconds'} <= set(run)
    assert (learn.mode, learn.export_extra) == ('cut', {'cut_layer': 'block1_pool'})
    json.dumps(run)

@pytest.mark.parametrize('arch,layer,size,pretrained', [('vgg16', 'block2_pool', 48, False),
                                                        ('efficientnet_lite0', 'blocks.5', 64, True)])
def test_exported_cut_model_loads_and_predicts_the_same(few_pets, tmp_path, arch, layer, size, pretrained):
    dls = pets_dataloaders(few_pets, bs=8, item_size=size, size=size, num_workers=0)
    learn, _ = train_cut(dls, TrainSpec(arch, pretrained=pretrained, epochs=1, lr=1e-2, options={'cut_layer': layer}))
    dest = export_model(learn, tmp_path/'model')
    meta = json.loads((dest/'model.json').read_text())
    assert (meta['mode'], meta['cut_layer'], meta['arch']) == ('cut', layer, arch)
    assert (meta['normalize'] is not None) == pretrained
    pm = load_model(dest, precision='fp32')   # compared with the fp32 learner at 1e-4
    assert isinstance(pm.model[0], FrozenBody)
    files = dls.valid_ds.items
    expected, _ = learn.get_preds(dl=dls.test_dl(files))
    torch.testing.assert_close(pm.probs([open_image(f) for f in files]), expected, atol=1e-4, rtol=0)

def test_real_imagenet_cut_learns_the_breeds(sample_dir):
    """EfficientNet-Lite0's first 11 blocks (PyPI ImageNet weights), frozen, and the seed's new layers,
    on the 81 real photos at 96 px (16 validation images; chance is an error of 0.67). Batches of 8: with 16
    there are too few steps (4 an epoch) for BatchNorm1d's running statistics to settle."""
    dls = pets_dataloaders(sample_dir, bs=8, item_size=112, size=96, num_workers=0)
    learn, run = train_cut(dls, TrainSpec('efficientnet_lite0', epochs=8, lr=3e-3, options={'cut_layer': 'blocks.10'}))
    assert run['epochs'][-1]['error_rate'] < 0.4, run['epochs']
