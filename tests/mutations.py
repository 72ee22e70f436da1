"""Mutation testing by a scripted list: does the suite fail when the code is wrong?

Each mutation changes exact text in one of the package's modules (`pet_breeds/*.py`, the files
`nbdev_export` writes). For each, the runner copies the repository (without `.venv` and `.git`) to
`SCRATCH/<n>`, applies the change there, runs the tests chosen for it against the copy (the copy's
`pet_breeds` first on the path, checked, so the editable install of the checkout is not used, also
by the console scripts the tests start) and records *killed* (a test failed) or *survived* (all
passed: a test is missing). The checkout itself is never touched.

    .venv/bin/python tests/mutations.py --list          # the mutations, and whether each still applies
    .venv/bin/python tests/mutations.py                  # run them all (about 7 min on 2 busy cores), print the table
    .venv/bin/python tests/mutations.py 3 7 --keep       # only these, keeping their scratch copies

To save the ~25 s of importing PyTorch and fastai per mutant, the runner imports them once and forks a
child per mutant that runs pytest (`--no-fork`: a fresh `python -m pytest` each time instead).
A test target may also be a notebook (`nbs/60_tools.widget.ipynb`), run as `nbdev_test` runs it: where the spec
lives in a notebook, its checks are what must fail, and pytest need not test the same thing again.
Mutations marked `issue` are those issue 10 reported as passing the suite; each must be killed.
Not collected by pytest (the name does not start with `test_`)."""
from __future__ import annotations
import argparse, os, shutil, signal, subprocess, sys, time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = Path(os.environ.get('PET_BREEDS_MUTATION_DIR', '/tmp/mut'))
TIMEOUT = 600   # seconds per mutant; a mutant that makes the tests hang counts as killed ('timeout')
IGNORE = shutil.ignore_patterns('.venv', '.git', '__pycache__', '.pytest_cache', '.hypothesis', '.ruff_cache',
                                '*.egg-info', '_proc', '_docs', 'runs')

@dataclass
class Mutation:
    name: str
    file: str                  # under pet_breeds/
    edits: list                # [(exact old text, new text)]; each old text must occur exactly once
    tests: list                # pytest node ids or files, or notebooks (`nbs/*.ipynb`), relative to the repository root
    issue: bool = False        # reported in issue 10's "Found": must be killed

    def apply(self, text:str) -> str:
        for old, new in self.edits:
            n = text.count(old)
            if n != 1: raise LookupError(f"{self.file}: expected the text once, found it {n} times: {old!r}")
            text = text.replace(old, new)
        return text

P = 'tests/test_recipe_pins.py::'
T = 'tests/test_sort.py::'
MUTATIONS = [
    # --- issue 10, "Found": each passed the suite before -------------------------------------------------
    Mutation("stage 2 lr_max -> stage 1's rate (train_finetune)", 'train.py',
             [("Stage(spec.epochs, slice(*spec.lr_max), frozen=False)", "Stage(spec.epochs, spec.lr, frozen=False)")],
             [P+'test_train_finetune_with_the_default_spec', P+'test_train_pets_runs_the_whole_recipe'], issue=True),
    Mutation("stage 2 lr_max -> stage 1's rate (train_two_stage)", 'train.py',
             [("Stage(epochs, lr_max, frozen=False)", "Stage(epochs, lr, frozen=False)")],
             [P+'test_train_two_stage_defaults', P+'test_stage2_rates_in_a_real_run'], issue=True),
    Mutation("default epochs 3/10 -> 1/1 (train_pets)", 'train_cli.py',
             [("freeze_epochs:int=RECIPE.freeze_epochs,  # finetune", "freeze_epochs:int=1,  # finetune"),
              ("epochs:int=RECIPE.epochs,   # finetune", "epochs:int=1,   # finetune")],
             [P+'test_entry_point_defaults_are_the_recipe', P+'test_train_pets_runs_the_whole_recipe'], issue=True),
    Mutation("default epochs 3/10 -> 1/1 (TrainSpec)", 'train.py',
             [("    freeze_epochs: int = RECIPE.freeze_epochs   #", "    freeze_epochs: int = 1   #"),
              ("    epochs: int = RECIPE.epochs                 #", "    epochs: int = 1                 #")],
             [P+'test_entry_point_defaults_are_the_recipe', P+'test_train_finetune_with_the_default_spec'], issue=True),
    Mutation("default epochs 3/10 -> 1/1 (train_two_stage)", 'train.py',
             [("freeze_epochs:int=RECIPE.freeze_epochs, # stage 1", "freeze_epochs:int=1, # stage 1"),
              ("epochs:int=RECIPE.epochs,               # stage 2", "epochs:int=1,               # stage 2")],
             [P+'test_entry_point_defaults_are_the_recipe', P+'test_train_two_stage_defaults'], issue=True),
    Mutation("seed=42 -> seed=0 in pets_dataloaders", 'data.py',
             [("seed:int=42,              # seed of the random validation split", "seed:int=0,              # seed of the random validation split")],
             [P+'test_validation_split_is_random_splitter_02_seed_42', P+'test_entry_point_defaults_are_the_recipe'], issue=True),
    Mutation("aug_transforms: flips off", 'data.py',
             [("aug_transforms(size=size, min_scale=min_scale)", "aug_transforms(size=size, min_scale=min_scale, do_flip=False)")],
             [P+'test_transforms_are_resize_460_and_default_aug_transforms_224'], issue=True),
    Mutation("aug_transforms: rotation off", 'data.py',
             [("aug_transforms(size=size, min_scale=min_scale)", "aug_transforms(size=size, min_scale=min_scale, max_rotate=0.)")],
             [P+'test_transforms_are_resize_460_and_default_aug_transforms_224'], issue=True),
    Mutation("aug_transforms: lighting off", 'data.py',
             [("aug_transforms(size=size, min_scale=min_scale)", "aug_transforms(size=size, min_scale=min_scale, max_lighting=0.)")],
             [P+'test_transforms_are_resize_460_and_default_aug_transforms_224'], issue=True),
    Mutation("aug_transforms: warp off", 'data.py',
             [("aug_transforms(size=size, min_scale=min_scale)", "aug_transforms(size=size, min_scale=min_scale, max_warp=0.)")],
             [P+'test_transforms_are_resize_460_and_default_aug_transforms_224'], issue=True),
    Mutation("read_model_json (read_meta): format check deleted", 'runtime.py',
             [("or meta.get('format') != FORMAT:", "or False:")],
             [P+'test_a_model_json_of_another_format_is_refused', P+'test_a_model_json_without_a_format_is_refused'], issue=True),
    Mutation("read_model_json (read_meta): version check deleted", 'runtime.py',
             [("if meta.get('format_version', 0) > FORMAT_VERSION:", "if False:")],
             [P+'test_a_newer_format_version_is_refused_naming_it'], issue=True),
    Mutation("read_meta: both checks bypassed", 'inference.py',
             [("    return read_model_json(path)\n",
               "    return json.loads((Path(path) if Path(path).suffix == '.json' else Path(path)/'model.json').read_text())\n")],
             [P+'test_a_model_json_of_another_format_is_refused', P+'test_a_newer_format_version_is_refused_naming_it'], issue=True),
    # --- core.py ---------------------------------------------------------------------------------------
    Mutation("BREED_RE case-sensitive", 'core.py',
             [("|bmp|webp|tiff?)$', re.IGNORECASE)", "|bmp|webp|tiff?)$')")],
             ['tests/test_bad_images.py::test_labels_accept_any_case_and_image_extension']),
    Mutation("BREED_RE dot unescaped", 'core.py',
             [(r"(.+)_\d+\.(?:jpe?g", r"(.+)_\d+.(?:jpe?g")],
             ['tests/test_bad_images.py::test_labels_accept_any_case_and_image_extension']),
    Mutation("species label swapped", 'core.py',
             [("return 'cat' if breed_label(fname)[:1].isupper() else 'dog'", "return 'dog' if breed_label(fname)[:1].isupper() else 'cat'")],
             ['tests/test_data.py::test_species_from_capitalisation']),
    Mutation("open_image: EXIF transpose removed", 'core.py',
             [("if _orientation(im) != 1: im = ImageOps.exif_transpose(im)", "pass")],
             ['tests/test_bad_images.py::test_the_pixels_are_right']),
    Mutation("16-bit images clipped instead of scaled", 'core.py',
             [("a = a.astype(np.float32) / 257           # 0-65535 -> 0-255", "a = a.astype(np.float32)")],
             ['tests/test_bad_images.py::test_the_pixels_are_right']),
    Mutation("read_image_bytes: empty-file check removed", 'core.py',
             [("    if not data: raise BadImage(f\"{label}: empty file\")\n", "")],
             ['tests/test_bad_images.py::test_scan_keeps_what_it_can_read_and_names_the_rest', P+'test_read_image_bytes_names_an_empty_file']),
    Mutation("transparency composited on black", 'core.py',
             [("Image.new('RGBA', rgba.size, (255, 255, 255, 255))", "Image.new('RGBA', rgba.size, (0, 0, 0, 255))")],
             ['tests/test_bad_images.py', 'tests/test_onnx.py::test_the_runtime_opens_images_with_the_training_opener']),
    # --- data.py ---------------------------------------------------------------------------------------
    Mutation("resize_short scales the longer side", 'data.py',
             [("s = size / min(w, h)", "s = size / max(w, h)")],
             ['tests/test_data.py::test_an_interrupted_write_leaves_no_trusted_file']),
    Mutation("fit_workers off by one", 'data.py',
             [("return max(0, min(cpus - 1, 8))", "return max(0, min(cpus, 8))")],
             ['tests/test_data.py::test_worker_count_fits_the_machine']),
    Mutation("scan: extension check removed", 'data.py',
             [("if fn.suffix.lower() not in IMAGE_EXTENSIONS:", "if False:")],
             ['tests/test_bad_images.py::test_scan_keeps_what_it_can_read_and_names_the_rest']),
    Mutation("validation reads the resized copies", 'data.py',
             [("loader = LoadImage({f: report.cached[f] for f in train if f in report.cached})", "loader = LoadImage(report.cached)")],
             ['tests/test_data.py::test_cached_batches_match_uncached']),
    Mutation("Resize(460) -> Resize(224) in the recipe", 'data.py',
             [("def pets_transforms(item_size:int=460,", "def pets_transforms(item_size:int=224,")],
             [P+'test_entry_point_defaults_are_the_recipe', P+'test_transforms_are_resize_460_and_default_aug_transforms_224']),
    # --- train.py --------------------------------------------------------------------------------------
    Mutation("lr_find_iterations off by one", 'train.py',
             [("round(LR_FIND_SHARE * n_batches * epochs)", "round(LR_FIND_SHARE * n_batches * epochs) + 1")],
             [P+'test_lr_find_iterations']),
    Mutation("stage 1 uses lr_find's minimum, not its valley", 'train.py',
             [("found = suggestions['valley'] if suggestions else None", "found = suggestions['minimum'] if suggestions else None")],
             [P+'test_train_two_stage_defaults', 'tests/test_training.py::test_lr_find_supplies_the_stage1_rate']),
    Mutation("BnFreeze callback dropped", 'train.py',
             [("return [BnFreeze()] if self.frozen and not self.train_bn else []", "return []")],
             ['tests/test_training.py::test_pretrained_stage1_leaves_the_whole_body_alone']),
    Mutation("TRAIN_BN = True", 'train.py',
             [("TRAIN_BN = False", "TRAIN_BN = True")],
             [P+'test_entry_point_defaults_are_the_recipe', 'tests/test_training.py::test_pretrained_stage1_leaves_the_whole_body_alone']),
    Mutation("from scratch: stage 1 batch norm frozen too", 'train.py',
             [("TRAIN_BN if getattr(learn, 'pretrained', True) else True", "TRAIN_BN")],
             ['tests/test_training.py::test_stage1_trains_head_and_bn_only_stage2_trains_body']),
    Mutation("stage 1 not frozen", 'train.py',
             [("learn.freeze() if self.frozen else learn.unfreeze()", "learn.unfreeze()")],
             ['tests/test_training.py::test_stage1_trains_head_and_bn_only_stage2_trains_body']),
    Mutation("resume: checkpoint epoch + 1", 'train.py',
             [("(prog['stage'], prog['epoch'] + 1)", "(prog['stage'], prog['epoch'] + 2)")],
             ['tests/test_resume.py']),
    Mutation("write_atomic: tmp never replaces the file", 'atomic.py',
             [("        _fsync(tmp)\n        os.replace(tmp, path)\n", "        _fsync(tmp)\n")],
             [P+'test_train_pets_runs_the_whole_recipe']),
    Mutation("write_atomic writes in place (not atomic)", 'atomic.py',
             [("    tmp = path.with_name(f'.{path.name}.tmp-{os.getpid()}-{threading.get_ident()}')", "    tmp = path")],
             [P+'test_write_atomic_never_leaves_half_a_file']),
    # --- inference.py / runtime.py ---------------------------------------------------------------------
    Mutation("export: vocab order reversed", 'inference.py',
             [("'vocab': list(map(str, dls.vocab)), 'head'", "'vocab': list(map(str, dls.vocab))[::-1], 'head'")],
             ['tests/test_export_cli.py::test_loading_never_unpickles']),
    Mutation("PetModel.topk: least probable first", 'inference.py',
             [("vals, idxs = p.topk(min(k, len(self.vocab)))", "vals, idxs = p.topk(min(k, len(self.vocab)), largest=False)")],
             ['tests/test_export_cli.py::test_predict_accepts_path_bytes_and_pil']),
    Mutation("OnnxModel.topk: least probable first", 'runtime.py',
             [("idx = np.argsort(-np.asarray(p), kind='stable')", "idx = np.argsort(np.asarray(p), kind='stable')")],
             ['tests/test_onnx.py::test_predict_without_pytorch_prints_what_pytorch_prints']),
    Mutation("runtime opens photos its own way (PIL's convert, no EXIF, 16-bit or alpha rules)", 'runtime.py',
             [("open_item=read_rgb,", "open_item=lambda f: Image.open(f).convert('RGB'),")],
             ['tests/test_onnx.py::test_the_runtime_opens_images_with_the_training_opener']),
    # --- distrib.py / train.py: data-parallel training (issue 11) --------------------------------------
    Mutation("data_parallel does nothing (every process trains on all the data)", 'distrib.py',
             [("    if not is_distributed():\n        yield learn\n        return\n", "    if True:\n        yield learn\n        return\n")],
             ['tests/test_distributed.py::test_two_processes_train_one_model_and_only_the_main_one_writes']),
    Mutation("metrics averaged per process (padding counted twice)", 'distrib.py',
             [("    learn.metrics = [exact_metric(m) for m in metrics]\n    learn.recorder.loss = AccumMetric(_loss_on(learn.loss_func), flatten=False)\n", "")],
             ['tests/test_distributed.py::test_the_metrics_cover_the_whole_validation_set_once']),
    Mutation("weights_digest reads names and shapes only", 'distrib.py',
             [("        h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes())\n", "")],
             ['tests/test_distributed.py::test_the_digests_are_those_of_the_exported_weights']),
    Mutation("after lr_find the processes keep their own random streams", 'train.py',
             [("            if is_distributed(): set_rng_states(broadcast(rng_states(learn.dls)), learn.dls)", "            pass")],
             ['tests/test_distributed.py::test_sigkill_then_resume_in_two_processes']),
    # --- precision.py / features.py: the precision policy, killed on either kind of CPU (issue 18) ----------
    Mutation("bf16 autocast silently disabled", 'precision.py',
             [("enabled=self.dtype is not None)", "enabled=False)")],
             ['tests/test_precision.py']),
    Mutation("prediction back to fp32 on every machine (issue 22 part 1: the predict row is the machine's)", 'precision.py',
             [("'features': 'fp32', 'probe': 'fp32', 'predict': 'machine',", "'features': 'fp32', 'probe': 'fp32', 'predict': 'fp32',")],
             ['tests/test_precision.py::test_each_path_predicts_under_its_row_of_the_table']),
    Mutation("features mode extracts under the training policy", 'features.py',
             [("policy = choose_policy(spec.precision, dls.device, 'features')", "policy = choose_policy(spec.precision, dls.device)")],
             ['tests/test_features.py::test_features_are_fp32_under_auto_on_every_cpu']),
    Mutation("extract_features defaults to the training policy", 'features.py',
             [("policy = ifnone(policy, choose_policy(device=dls.device, path='features'))", "policy = ifnone(policy, choose_policy(device=dls.device))")],
             ['tests/test_features.py::test_features_are_fp32_under_auto_on_every_cpu']),
    # --- runtime.py: labels are data (issue 21) -------------------------------------------------------------
    Mutation("a label that cannot name a folder is loaded", 'runtime.py',
             [('        if why:\n            raise BadModel(f"{fn}: the label', '        if False:\n            raise BadModel(f"{fn}: the label')],
             ['tests/test_model_files.py::test_a_label_that_cannot_name_a_folder_is_refused_at_load']),
    # --- model_json.py, runtime.py, inference.py: bounds before allocation, no success on a wrong result (issue 21) ------
    Mutation("model.json's entries are not checked", 'runtime.py',
             [('    why = meta_problem(meta)', '    why = None')],
             ['tests/test_model_files.py::test_model_json_out_of_range_is_refused_before_anything_is_built']),
    Mutation("the head's widths are unbounded", 'model_json.py',
             [("width = Range(1, MAX_HEAD_WIDTH)", "width = Range(1, 10**12)")],
             ['tests/test_model_files.py::test_model_json_out_of_range_is_refused_before_anything_is_built']),
    Mutation("a zero std is accepted", 'model_json.py',
             [("('std', Range(above=0, whole=False, n=3))", "('std', Range(whole=False, n=3))")],
             ['tests/test_model_files.py::test_model_json_out_of_range_is_refused_before_anything_is_built']),
    Mutation("NaN weights are loaded", 'inference.py',
             [("    if broken: raise", "    if False: raise")],
             ['tests/test_model_files.py::test_weights_holding_nan_are_refused_at_load']),
    Mutation("NaN probabilities are printed as a prediction", 'runtime.py',
             [("            if not math.isfinite(float(p.sum())):", "            if False:")],
             ['tests/test_model_files.py::test_nan_probabilities_are_no_prediction']),
    # --- core.py, deploy.py, runtime.py: options in range, names escaped (issue 21) ------------------------------
    Mutation("an option out of range exits 1 like any error", 'core.py',
             [("        print(msg, file=sys.stderr)\n        raise UsageExit(msg) from None", "        sys.exit(msg)")],
             ['tests/test_red_team.py::test_an_option_out_of_range_exits_2_with_one_line_before_loading']),
    Mutation("export takes any --opset", 'deploy.py',
             [("check_range('opset', opset, lo=13, hi=20)", "pass")],
             ['tests/test_red_team.py::test_an_option_out_of_range_exits_2_with_one_line_before_loading']),
    Mutation("predict takes --k 0 and --bs -1", 'deploy.py',
             [("check_range('k', k, lo=1)\n        check_range('bs', bs, lo=1)", "pass")],
             ['tests/test_red_team.py::test_an_option_out_of_range_exits_2_with_one_line_before_loading']),
    Mutation("a NaN learning rate is in range", 'core.py',
             [("and not isinstance(v, bool) and math.isfinite(v)", "and not isinstance(v, bool)")],
             ['tests/test_red_team.py::test_an_option_out_of_range_exits_2_with_one_line_before_loading']),
    Mutation("file names are printed raw", 'runtime.py',
             [("else: print(f\"{shown(r['file'])}: {format_top(r['top'])}\", flush=True)", "else: print(f\"{r['file']}: {format_top(r['top'])}\", flush=True)")],
             ['tests/test_red_team.py::test_predict_prints_names_from_outside_escaped']),
    Mutation("the app answers any Host header (DNS rebinding)", 'widget.py',
             [("'allow_remote_access': remote}", "'allow_remote_access': True}")],
             ['nbs/60_tools.widget.ipynb']),
    # --- widget.py: the app's pages run onnxruntime (issue 33) ---------------------------------------------------
    Mutation("a page runs a model.onnx changed since export", 'space.py',
             [("return fn if fn.is_file() and recorded == file_sha256(fn) else None", "return fn if fn.is_file() else None")],
             ['nbs/60_tools.widget.ipynb']),
    Mutation("the app's pages run PyTorch (no model.onnx exported for them)", 'widget.py',
             [("    if current_onnx(folder) is not None or not (folder/WEIGHTS_FILE).is_file():",
               "    if True: return folder, 'torch', 'mutant'\n    if current_onnx(folder) is not None:")],
             ['tests/test_app_load.py::test_upload_app_is_capped_and_culled', 'nbs/60_tools.widget.ipynb']),
    Mutation("the app exports model.onnx into the model's own folder", 'widget.py',
             [("t0, copy = time.perf_counter(), Path(dest)/'model'", "t0, copy = time.perf_counter(), folder/'pages'")],
             ['tests/test_app_load.py::test_upload_app_is_capped_and_culled', 'nbs/60_tools.widget.ipynb']),
    Mutation("a model that does not export stops the app instead of running PyTorch", 'widget.py',
             [("        if runtime == 'onnx': raise PetBreedsError(f\"{e}; --runtime torch",
               "        if True: raise PetBreedsError(f\"{e}; --runtime torch")],
             ['nbs/60_tools.widget.ipynb']),
    Mutation("the widget module imports PyTorch", 'widget.py',
             [("ipaddress, json, os, shutil, sys, tempfile, time\n", "ipaddress, json, os, shutil, sys, tempfile, time, torch\n")],
             ['nbs/60_tools.widget.ipynb']),
    Mutation("the default cap ignores what runs the pages", 'widget.py',
             [("    if runtime != 'onnx': return KERNEL_MB", "    return KERNEL_MB")],
             ['nbs/60_tools.widget.ipynb']),
    # --- probe.py: a large folder, a given validation folder (issue 29) ---------------------------------------------
    Mutation("a validation folder is trained on by default", 'probe.py',
             [("refit = ifnone(refit, not dls.layout.given_valid)", "refit = ifnone(refit, True)")],
             ['tests/test_layouts.py::test_each_layout_trains_the_probe']),
    Mutation("every candidate backbone sees every photo of a large folder", 'probe.py',
             [("fit_idx[choice_subset(y[fit_idx], select_per_class, seed)] if len(branches) > 1 else fit_idx",
               "fit_idx")],
             ['nbs/43_modes.probe.ipynb']),
    Mutation("on a sample, the best candidate is taken however little better", 'probe_cv.py',
             [("    if simplest:   # the one-standard-error rule", "    if False:   # the one-standard-error rule")],
             ['nbs/42_modes.probe_cv.ipynb']),
    Mutation("a NaN feature-cache entry is trained on", 'features.py',
             [("return x if x.ndim == 1 and x.is_floating_point() and bool(torch.isfinite(x).all()) else None", "return x")],
             ['tests/test_red_team.py::test_a_tampered_feature_cache_entry_is_recomputed_not_trained_on']),
    # --- deploy.py: the int8 model (issue 22) ---------------------------------------------------------------------
    Mutation("an int8 model that disagrees with fp32 is written", 'deploy.py',
             [("        if agree < min_agreement:", "        if False:")],
             ['nbs/51_deploy.ipynb']),
    # --- files.py / sort.py / watch.py / sort_cli.py: the sorter's inputs are hostile (issue 21) ------------------------------
    Mutation("a link out of INCOMING is followed (copies /etc/shadow into OUT)", 'files.py',
             [("        if not target.is_relative_to(os.path.realpath(incoming)):\n            return None,", "        if False:\n            return None,")],
             [T+'test_links_out_of_incoming_loops_and_fifos_are_named_never_read']),
    Mutation("INCOMING's listing follows links (a loop stops the run)", 'files.py',
             [("and not e.is_dir(follow_symlinks=False))", "and e.is_file())")],
             [T+'test_links_out_of_incoming_loops_and_fifos_are_named_never_read']),
    Mutation("what is not a regular file is read (a fifo blocks the sorter)", 'files.py',
             [("    if stat.S_ISREG(st.st_mode): return target, None", "    if True: return target, None")],
             [T+'test_links_out_of_incoming_loops_and_fifos_are_named_never_read']),
    Mutation("a copy gets the default mode 0o666 less the umask (0o640 becomes 0o644)", 'files.py',
             [("stat.S_IMODE(st.st_mode) & 0o777)", "0o666)")],
             [T+'test_a_copy_never_widens_permissions']),
    Mutation("a followed link is hard-linked into OUT, not copied", 'files.py',
             [("    if move and read_from is None and not src.is_symlink() and _try_link(src, dest):", "    if move and _try_link(src, dest):")],
             [T+'test_links_out_of_incoming_loops_and_fifos_are_named_never_read']),
    Mutation("a refused entry gets a new CSV row every run", 'sort.py',
             [("    if (clean_name(p.name), '') in self.done:\n        return", "    if False:\n        return")],
             [T+'test_links_out_of_incoming_loops_and_fifos_are_named_never_read']),
    Mutation("watch opens a fifo to see whether it is written (blocks)", 'watch.py',
             [("        if not stat.S_ISREG(os.stat(path).st_mode):\n            return True", "        os.stat(path)")],
             [T+'test_watch_names_fifos_and_dangling_links_and_goes_on']),
    Mutation("watch drops a dangling link unnamed", 'core.py',
             [("    except OSError: st = os.lstat(path)", "    except OSError: raise")],
             [T+'test_watch_names_fifos_and_dangling_links_and_goes_on']),
    Mutation("recovery acts on journal records unchecked (unlinks any path)", 'sort.py',
             [("    recs = [self._check_record(r, n) for n, r in enumerate(self.journal.records(), 1)]", "    recs = self.journal.records()")],
             [T+'test_a_journal_naming_paths_outside_out_stops_the_run_and_deletes_nothing']),
    Mutation("a journal's temporary file may be any file in OUT", 'sort.py',
             [("    if not (inside(rec['tmp'], self.out) and tmp_name.startswith('.') and tmp_name.endswith('.sorting')):",
               "    if not inside(rec['tmp'], self.out):")],
             [T+'test_a_journal_naming_paths_outside_out_stops_the_run_and_deletes_nothing']),
    Mutation("inside() does not resolve links on the way", 'files.py',
             [("    return Path(os.path.realpath(p.parent)).is_relative_to(os.path.realpath(folder))",
               "    return Path(os.path.normpath(p.parent)).is_relative_to(os.path.normpath(folder))")],
             [T+'test_a_journal_naming_paths_outside_out_stops_the_run_and_deletes_nothing']),
    Mutation("a journal's source may be anywhere (a 'move' unlinks it)", 'sort.py',
             [("    if not (os.path.isabs(rec['src']) and self.incoming is not None and inside(rec['src'], self.incoming)):",
               "    if not os.path.isabs(rec['src']):")],
             [T+'test_a_journal_naming_paths_outside_out_stops_the_run_and_deletes_nothing']),
    Mutation("CSV rows are not checked", 'sort.py',
             [("        if not isinstance(d, str) or (d and not inside(d, self.out)) or (not d and r.get('status') != 'rejected'):",
               "        if False:")],
             [T+'test_a_csv_row_naming_a_path_outside_out_stops_the_run']),
    Mutation("pet_breeds_sort's options are not checked", 'sort_cli.py',
             [("    if why := options_problem(min_prob, bs, settle):", "    if why := None:")],
             [T+'test_options_out_of_range_exit_2_in_one_line_before_loading']),
    Mutation("--bs has no upper bound", 'sort_cli.py',
             [("    if not 1 <= bs <= MAX_BS:", "    if not 1 <= bs:")],
             [T+'test_options_out_of_range_exit_2_in_one_line_before_loading']),
    Mutation("the errors are printed raw (a right-to-left override reaches the terminal)", 'sort_cli.py',
             [('cannot read {shown(e)}"', 'cannot read {e}"')],
             [T+'test_sort_command_names_what_it_refused_escaped_and_exits_partial']),
    Mutation("the summary prints labels raw", 'sort_cli.py',
             [("    labels = ', '.join(f'{shown(k)} {v}'", "    labels = ', '.join(f'{k} {v}'")],
             [T+'test_sort_command_names_what_it_refused_escaped_and_exits_partial']),
    Mutation("the sorter's own files in OUT may be links (clearing the journal truncates their target)", 'sort.py',
             [("    self._check_own_files()  # before the lock file is opened", "    pass  # before the lock file is opened")],
             [T+'test_the_sorters_own_files_in_out_may_not_be_links']),
    Mutation("a label folder that is a link takes files out of OUT", 'sort.py',
             [("    if folder.is_symlink() or not folder.is_dir():", "    if not folder.is_dir():")],
             [T+'test_a_label_folder_that_is_a_link_out_of_out_is_not_written_through']),
    Mutation("the temporary name holds the whole file name (over 255 bytes for a long one)", 'sort.py',
             [("'tmp': (folder/f'.{dest.stem[:40]}.{rid[:8]}.sorting')", "'tmp': (folder/f'.{dest.name}.{rid[:8]}.sorting')")],
             [T+'test_a_name_near_the_length_limit_is_sorted']),
    Mutation("a CSV csv cannot parse raises csv.Error (a traceback)", 'files.py',
             [("        except csv.Error as e:\n", "        except ZeroDivisionError as e:\n")],
             [T+'test_a_csv_or_journal_line_python_cannot_parse_gives_no_traceback']),
    Mutation("a journal line nested too deep raises RecursionError", 'files.py',
             [("            except (ValueError, RecursionError):\n", "            except ValueError:\n")],
             [T+'test_a_csv_or_journal_line_python_cannot_parse_gives_no_traceback']),
    # --- cli.py / train.py / checkpoint.py: pet_breeds_train's guards (issue 21) -------------------------------------
    Mutation("train --out: files the package did not write are let through", 'train_cli.py',
             [("    if foreign and not overwrite:\n        raise", "    if False:\n        raise")],
             ['tests/test_train_guards.py::test_an_out_holding_foreign_files_is_refused_and_they_stay', 'tests/test_train_guards.py::test_overwrite_writes_the_run_and_leaves_the_owners_files']),
    Mutation("train --out --overwrite: a foreign file where the run writes is replaced", 'train_cli.py',
             [("    if clash:\n        raise BadOptions(", "    if False:\n        raise BadOptions(")],
             ['tests/test_train_guards.py::test_an_out_holding_foreign_files_is_refused_and_they_stay', 'tests/test_train_guards.py::test_a_link_in_out_is_never_the_packages']),
    Mutation("unowned: a link counts as the package's file", 'checkpoint.py',
             [("    if p.is_symlink(): return None", "    if False: return None")],
             ['tests/test_train_guards.py::test_a_link_in_out_is_never_the_packages']),
    Mutation("train: --out inside --data accepted", 'train_cli.py',
             [("    if o == d or d in o.parents:\n        raise", "    if False:\n        raise")],
             ['tests/test_train_guards.py::test_out_and_data_apart']),
    Mutation("train: an interrupted run is discarded by a fresh one", 'train_cli.py',
             [("    if not (resuming or overwrite) and (o/'checkpoints'/'latest.json').is_file():", "    if False:")],
             ['tests/test_train_guards.py::test_an_interrupted_run_is_resumed_or_overwritten_not_discarded']),
    Mutation("train: option ranges not checked", 'train_cli.py',
             [("if v is not None and k in OPTION_RANGES: OPTION_RANGES[k].check(k, v)", "pass")],
             ['tests/test_train_guards.py::test_options_out_of_range_exit_2_before_any_work']),
    Mutation("train: a usage error exits 1, not 2", 'core.py',
             [("        print(msg, file=sys.stderr)\n        raise UsageExit(msg) from None", "        sys.exit(msg)")],
             ['tests/test_train_guards.py::test_options_out_of_range_exit_2_before_any_work']),
    Mutation("train: one class reaches training", 'train_cli.py',
             [("    if len(counts) == 1:", "    if False:")],
             ['tests/test_train_guards.py::test_one_class_is_refused_before_training']),
    Mutation("resume: run.json's options used unchecked", 'train_cli.py',
             [("        check_options({k: v for k, v in opts.items() if k != 'resume'})\n", "")],
             ['tests/test_train_guards.py::test_a_hand_edited_run_json_is_named']),
    Mutation("train: a NaN loss only cancels the fit (fastai's TerminateOnNaNCallback)", 'train.py',
             [("StopOnNonFinite(i), *stage.callbacks()]", "TerminateOnNaNCallback(), *stage.callbacks()]")],
             ['tests/test_train_guards.py::test_a_rerun_replaces_its_own_run_and_a_diverging_one_exports_nothing']),
    Mutation("export_model leaves the earlier model's model.onnx beside the new weights", 'inference.py',
             [("    if onnx.is_file() and not onnx.is_symlink(): onnx.unlink()\n", "")],
             ['tests/test_train_guards.py::test_a_rerun_replaces_its_own_run_and_a_diverging_one_exports_nothing']),
    Mutation("a rerun leaves the earlier run's predictions.csv and lr_find.png", 'train_cli.py',
             [("    for n in ('predictions.csv', *(() if run['lr_find'] else ('lr_find.png',))): (out/n).unlink(missing_ok=True)", "    pass")],
             ['tests/test_train_guards.py::test_a_rerun_replaces_its_own_run_and_a_diverging_one_exports_nothing']),
    # --- audit.py: the audit of a folder (issue 20) -------------------------------------------------------------
    Mutation("label issues ranked least suspect first", 'audit.py',
             [("for i in np.argsort(score, kind='stable')]", "for i in np.argsort(-score, kind='stable')]")],
             ['tests/test_audit.py::test_the_renamed_photos_come_first']),
    Mutation("cleanlab's default filter flags the photos (not the lowest scores)", 'audit.py',
             [("find_label_issues(y, p, filter_by='low_self_confidence', n_jobs=1)", "find_label_issues(y, p, n_jobs=1)")],
             ['tests/test_audit.py::test_the_renamed_photos_come_first']),
    Mutation("exact duplicates not reported", 'audit.py',
             [("if d in first: pairs.append((i, first[d], 'exact'))", "if False: pairs.append((i, first[d], 'exact'))")],
             ['tests/test_audit.py::test_duplicates_exact_and_near']),
    Mutation("near duplicates not reported", 'audit.py',
             [("((X[s:s+1024] @ X.T) >= near)", "((X[s:s+1024] @ X.T) > 1.5)")],
             ['tests/test_audit.py::test_duplicates_exact_and_near']),
    Mutation("a duplicate across a run's split is no leak", 'audit.py',
             [("'kind': 'leak' if leak(i, j) else k}", "'kind': k}")],
             ['tests/test_audit.py::test_a_duplicate_across_a_runs_split_is_a_leak']),
    Mutation("the only photo of a breed is cross-validated", 'audit.py',
             [("for f in photos if per[given[f]] < 2})", "for f in photos if per[given[f]] < 1})"),
              ("vocab = sorted(b for b, n in per.items() if n >= 2)", "vocab = sorted(b for b, n in per.items() if n >= 1)"),
              ("checked = [i for i, f in enumerate(photos) if per[given[f]] >= 2]", "checked = list(range(len(photos)))")],
             ['tests/test_audit.py::test_a_breed_with_one_photo_is_a_named_skip']),
    Mutation("the report folder is not checked before the work", 'audit.py',
             [("    _check_writable(out)\n", "")],
             ['tests/test_audit.py::test_bad_input_is_one_line_and_moves_nothing[report-not-writable]']),
    Mutation("the report may be written among the photos", 'audit.py',
             [("if out.resolve().is_relative_to(data.resolve()):", "if False:")],
             ['tests/test_audit.py::test_bad_input_is_one_line_and_moves_nothing[report-inside-photos]']),
    Mutation("--near out of range accepted", 'audit.py',
             [("check_range('near', near, lo=0, hi=1, whole=False)", "pass")],
             ['tests/test_audit.py::test_bad_input_is_one_line_and_moves_nothing[near]']),
    Mutation("the dark rule is off", 'audit.py',
             [("'dark': m < q['dark']", "'dark': False")],
             ['tests/test_audit.py::test_quality_flags_and_named_skips']),
    Mutation("names outside <breed>_<n> are not skipped", 'audit.py',
             [("for f in ok if not BREED_RE.search(f.name)}", "for f in ok if False}")],
             ['tests/test_audit.py::test_quality_flags_and_named_skips']),
    # --- clean.py: the cleaner that acts on the audit (issue 20, part 2) -----------------------------------------
    Mutation("a report row may point out of DATA", 'clean.py',
             [("ok = isinstance(rel, str) and not os.path.isabs(rel) and '..' not in Path(rel).parts and inside(rel, data)", "ok = isinstance(rel, str)")],
             ['tests/test_clean.py::test_a_report_naming_a_file_outside_data_is_refused']),
    Mutation("a report row may be a link", 'clean.py',
             [("and not os.path.islink(data/rel): return data/rel", ": return data/rel")],
             ['tests/test_clean.py::test_a_report_naming_a_file_outside_data_is_refused']),
    Mutation("a relabel may name any breed (a path)", 'clean.py',
             [("    if label not in classes:\n", "    if False:\n")],
             ['tests/test_clean.py::test_a_report_naming_a_file_outside_data_is_refused']),
    Mutation("a removed photo stays in its folder", 'clean.py',
             [("else: dest = free_name(data/REMOVED, src.name, taken)", "else: dest = free_name(src.parent, src.name, taken)")],
             ['tests/test_clean.py::test_apply_moves_the_decided_photos_and_only_them']),
    Mutation("a move is not journaled", 'clean.py',
             [("    j.append({'op': 'move', 'id': uuid.uuid4().hex,", "    (lambda r: None)({'op': 'move', 'id': uuid.uuid4().hex,")],
             ['tests/test_clean.py::test_undo_restores_every_file_byte_for_byte_once']),
    Mutation("a click is not saved", 'clean.py',
             [("        save_decisions(report, d)\n    return d", "    return d")],
             ['tests/test_clean.py::test_decisions_survive_paging_filters_and_a_new_cleaner']),
    Mutation("undo moves back onto a taken name", 'clean.py',
             [("if holds(dest) and not taken(src):\n        state.update", "if holds(dest):\n        state.update")],
             ['tests/test_clean.py::test_undo_refuses_a_taken_name_or_a_missing_photo_and_moves_nothing']),
    Mutation("undo forgets what it undid", 'clean.py',
             [("undone = {r['id'] for r in recs if r['op'] == 'undone'}", "undone = set()")],
             ['tests/test_clean.py::test_undo_restores_every_file_byte_for_byte_once']),
    Mutation("undo checks each move against the disk alone, not the undos before it", 'clean.py',
             [("taken = lambda p: state[p] is not None if p in state else os.path.lexists(p)", "taken = lambda p: os.path.lexists(p)"),
              ("    def holds(p):\n        if p in state: return state[p] == r['sha256']\n", "    def holds(p):\n")],
             ['tests/test_clean.py::test_undo_follows_a_photo_moved_by_two_applies']),
    Mutation("a bad journal line is skipped", 'clean.py',
             [("if n == len(lines): continue", "continue")],
             ['tests/test_clean.py::test_a_bad_journal_line_is_one_line_and_moves_nothing']),
    Mutation("undo leaves the second name of a move a kill stopped half-way", 'clean.py',
             [("unlink_missing_ok(data/r['dest'])  # a link a kill left", "pass  # a link a kill left")],
             ['tests/test_clean.py::test_an_interrupted_apply_is_undone']),
    Mutation("apply and undo take no lock", 'clean.py',
             [("def _lock(report):\n    return lock_folder(report, LOCK,", "def _lock(report):\n    return open(os.devnull) or lock_folder(report, LOCK,")],
             ['tests/test_clean.py::test_one_apply_or_undo_at_a_time']),
    # --- issue 22 part 1: prediction under the predict row, torch.compile for a large folder -----------------
    Mutation("PetModel reads the training row of AUTO", 'inference.py',
             [("self.policy = choose_policy(precision, self.device, predict_path(meta))",
               "self.policy = choose_policy(precision, self.device)")],
             ['tests/test_precision.py::test_petmodel_and_load_model_default_to_the_predict_row']),
    Mutation("PetModel defaults to fp32", 'inference.py',
             [("                 precision:str='auto'):     # 'auto': the `AUTO` row",
               "                 precision:str='fp32'):     # 'auto': the `AUTO` row")],
             ['tests/test_precision.py::test_petmodel_and_load_model_default_to_the_predict_row']),
    Mutation("load_model defaults to fp32", 'inference.py',
             [("               precision:str='auto'  # PyTorch's policy ('auto'", "               precision:str='fp32'  # PyTorch's policy ('auto'")],
             ['tests/test_precision.py::test_petmodel_and_load_model_default_to_the_predict_row']),
    Mutation("the sorter defaults to fp32", 'sort.py',
             [("precision:str='auto',     # a path", "precision:str='fp32',     # a path")],
             ['tests/test_precision.py::test_petmodel_and_load_model_default_to_the_predict_row']),
    Mutation("pet_breeds_predict defaults to fp32", 'deploy.py',
             [("precision:Option(PRECISION_HELP)='auto'):", "precision:Option(PRECISION_HELP)='fp32'):")],
             ['tests/test_precision.py::test_the_commands_default_to_auto']),
    Mutation("pet_breeds_sort defaults to fp32", 'sort_cli.py',
             [("precision:precision_option()='auto'):", "precision:precision_option()='fp32'):")],
             ['tests/test_precision.py::test_the_commands_default_to_auto']),
    Mutation("compiling from one image past the threshold", 'precision.py',
             [("if n >= t: return True", "if n > t: return True")],
             ['tests/test_precision.py::test_compile_choice_is_a_rule_of_n_policy_and_machine']),
    Mutation("emulated bf16 compiles too", 'precision.py',
             [("if policy.name == 'bf16' and not ifnone(native, native_bf16_cpu()):", "if False:")],
             ['tests/test_precision.py::test_compile_choice_is_a_rule_of_n_policy_and_machine']),
    Mutation("the last batch is not padded: a second compile", 'precision.py',
             [("                    if n < compiled_bs: x = _padded(x, compiled_bs, policy.memory_format())\n", "")],
             ['tests/test_precision.py::test_predict_many_compiles_once_and_pads_every_batch']),
    Mutation("fastai's TensorImage reaches the compiled network", 'precision.py',
             [("                    x = x.as_subclass(torch.Tensor)\n", "")],
             ['tests/test_precision.py::test_predict_many_compiles_once_and_pads_every_batch']),
    Mutation("a compile per call, not kept with the model", 'precision.py',
             [("        model.__dict__['_compiled_for_predict'] = c", "        pass")],
             ['tests/test_precision.py::test_predict_many_compiles_once_and_pads_every_batch']),
    Mutation("predict_many compiles whatever the count", 'inference.py',
             [("if compile is None: compile = hasattr(items, '__len__') and self.compile_choice(len(items))[0]", "if compile is None: compile = True")],
             ['tests/test_precision.py::test_predict_many_compiles_once_and_pads_every_batch']),
    Mutation("pet_breeds_predict never compiles", 'deploy.py',
             [("        kw['compile'], why = pm.compile_choice(len(images))", "        why = pm.compile_choice(len(images))[1]\n        kw['compile'] = False")],
             ['tests/test_precision.py::test_predict_command_prints_its_compile_choice']),
    Mutation("kept validation batches never served", 'kept_batches.py',
             [("if st['key'] == key and st['batches'] is not None:", "if False:")],
             ['nbs/12_data.kept_batches.ipynb']),
    Mutation("batches kept in training mode and when shuffled", 'kept_batches.py',
             [("return not self.shuffle and getattr(self.dataset, 'split_idx', None) == 1 and self.max_mb > 0", "return self.max_mb > 0")],
             ['nbs/12_data.kept_batches.ipynb']),
    Mutation("kept batches outlive a change of batch transforms", 'kept_batches.py',
             [("repr(self.after_item), repr(self.before_batch), repr(self.after_batch))", "repr(self.after_item), repr(self.before_batch))")],
             ['nbs/12_data.kept_batches.ipynb']),
    Mutation("no max_mb: any pass is kept", 'kept_batches.py',
             [("if mb <= self.max_mb: kept.append(b)", "if True: kept.append(b)")],
             ['nbs/12_data.kept_batches.ipynb']),
    Mutation("the decoding pass draws from the global generators", 'kept_batches.py',
             [("            if states is not None:\n                set_random_states(**states)", "            pass")],
             ['nbs/12_data.kept_batches.ipynb', 'tests/test_resume.py']),
    Mutation("get_preds' copy of the loader keeps its own batches", 'kept_batches.py',
             [("if isinstance(res, KeptBatchesDL): res.store = self.store", "pass")],
             ['nbs/12_data.kept_batches.ipynb', 'nbs/32_predict.inference.ipynb']),
    Mutation("the validation loader decodes every epoch", 'data.py',
             [("    dls.loaders[1] = dls.valid.new(cls=KeptBatchesDL, max_mb=valid_kept_mb)", "    pass")],
             ['nbs/13_data.ipynb']),
    Mutation("the projection ignores the kept validation passes", 'bench.py',
             [("RECIPE.bs, valid_again_img_s=valid['again_img_s'])", "RECIPE.bs)")],
             ['tests/test_bench.py::test_bench_command_smoke']),
    Mutation("the valid ceiling ratio over the first (decoding) pass", 'bench.py',
             [("'valid_ceiling_ratio': res['package_valid']['again_img_s'] / fc['plain_img_s'],", "'valid_ceiling_ratio': res['package_valid']['first_img_s'] / fc['plain_img_s'],")],
             ['nbs/71_bench.ipynb']),
    Mutation("int8 top-1 judged against the first photo's breed", 'deploy_bench.py',
             [("ims, y = [open_image(f) for f in files], [breed_label(Path(f).name) for f in files]", "ims, y = [open_image(f) for f in files], [breed_label(Path(files[0]).name) for f in files]")],
             ['nbs/72_bench.deploy_bench.ipynb']),
    # --- the one-pass warp and crop (11_data.augment) ---------------------------------------------------------
    Mutation("the crop's rows and columns swapped", 'augment.py',
             [("(ch, cw), (top, left) = crop.cp_size, crop.tl", "(ch, cw), (left, top) = crop.cp_size, crop.tl")],
             ['nbs/11_data.augment.ipynb']),
    Mutation("the affine map applied before the crop", 'augment.py',
             [("mat = torch.cat([a.mat, _init_mat(x)[:, 2:]], dim=1) @ _crop_mat(x, self.crop)", "mat = _crop_mat(x, self.crop) @ torch.cat([a.mat, _init_mat(x)[:, 2:]], dim=1)")],
             ['nbs/11_data.augment.ipynb']),
    Mutation("the warp left out of the one pass", 'augment.py',
             [("warp = None if not a.coord_fs or a.split_idx else", "warp = None if True else")],
             ['nbs/11_data.augment.ipynb']),
    Mutation("training crops the whole image (the crop drawn in validation mode)", 'augment.py',
             [("        self.crop.before_call(b, split_idx)", "        self.crop.before_call(b, 1)")],
             ['nbs/11_data.augment.ipynb']),
    Mutation("the recipe resamples twice again (no fusing)", 'data.py',
             [("fuse_affine_crop(aug_transforms(size=size, min_scale=min_scale))", "list(aug_transforms(size=size, min_scale=min_scale))")],
             ['nbs/13_data.ipynb', P+'test_transforms_are_resize_460_and_default_aug_transforms_224']),
    Mutation("learner_meta reads only the fused pipeline (older exports refused)", 'inference.py',
             [("sorted(type(t).__name__ for t in unfused(tfms))", "sorted(type(t).__name__ for t in tfms)")],
             ['tests/test_model_files.py::test_an_export_with_fastais_two_resampling_transforms_loads_and_predicts_like_its_learner']),
    # --- training through torch.compile (--compile) --------------------------------------------------------
    Mutation("--compile never compiles", 'precision.py',
             [("        if p.compile:\n            self.learn.model.compile(dynamic=False)", "        pass")],
             ['nbs/23_train.precision.ipynb', P+'test_the_compile_option_reaches_every_fit_and_the_record']),
    Mutation("the compiled model stays compiled after fit (exports run it)", 'precision.py',
             [("        if self.policy.compile:\n            # undo `nn.Module.compile`: export and interpretation run the module as written\n"
               "            self.learn.model._compiled_call_impl = None", "        pass")],
             ['nbs/23_train.precision.ipynb']),
    Mutation("TrainSpec drops its compile option", 'train.py',
             [("compile=self.compile)", "compile=False)")],
             [P+'test_the_compile_option_reaches_every_fit_and_the_record']),
    Mutation("the first batch's seconds measured to the last batch", 'measure.py',
             [("return t[1][0] - t[0][0] if len(t) >= 2 else None", "return t[-1][0] - t[0][0] if len(t) >= 2 else None")],
             ['nbs/70_bench.measure.ipynb']),
]

# --- issue 29: the audit and the cleaner follow the layout (folders, split folders, a CSV) ------------------------------
L = 'tests/test_clean_layouts.py::'
A = L + 'test_the_audit_reads_the_layout_and_names_classes'
R = L + 'test_a_relabel_follows_the_layout_and_the_undo_puts_it_back'
X = L + 'test_a_relabel_to_no_class_or_no_folder_name_is_refused'
MUTATIONS += [
    Mutation("the audit leaves test/ out", 'audit.py', [("given = {**lay.labels, **lay.test}", "given = dict(lay.labels)")], [A+'[split]']),
    Mutation("no leak check from the layout's split", 'audit.py', [("if model is not None else held or None", "if model is not None else None")], [A+'[split]']),
    Mutation("the summary says breeds for every layout", 'audit.py', [("noun, nouns = ('breed', 'breeds') if res['layout']['kind'] == 'pets' else ('class', 'classes')", "noun, nouns = ('breed', 'breeds')")], [A+'[folders]']),
    Mutation("a CSV's unlisted image is not skipped", 'audit.py', [("skipped.update({f: f\"{unlisted}: no label to check\" for f in ok if f not in skipped and f not in given})", "pass")], [A+'[csv]']),
    Mutation("summary.json records no layout", 'audit.py', [("'layout': _layout_record(lay), ", "")], [A+'[folders]']),
    Mutation("labels from the file names (PETS) in every layout", 'audit.py', [("given = {**lay.labels, **lay.test}", "given = {f: breed_label(f) for f in {**lay.labels, **lay.test}}")], [A+'[folders]']),
    Mutation("a folder layout's relabel renames as PETS", 'clean.py', [("    if layout is None: return relabel_name(src, label, taken)", "    if layout is None or layout.kind != 'csv': return relabel_name(src, label, taken)")], [R+'[folders]']),
    Mutation("a split relabel leaves the photo's part", 'clean.py', [("free_name(src.parent.parent/label, src.name, taken)", "free_name(layout.root/label, src.name, taken)")], [R+'[split]']),
    Mutation("a CSV relabel rewrites no row", 'clean.py', [("if layout is not None and layout.kind == 'csv': _change_row(", "if False: _change_row(")], [R+'[csv]']),
    Mutation("a CSV removal keeps the row", 'clean.py', [("if layout is not None and layout.kind == 'csv': _change_row(", "if layout is not None and layout.kind == 'csv' and label is not None: _change_row(")], [L+'test_a_csv_removal_drops_the_row_and_the_undo_puts_both_back']),
    Mutation("a row change is not journaled", 'clean.py', [("j.append({'op': 'row',", "(lambda r: None)({'op': 'row',")], [R+'[csv]']),
    Mutation("the undo leaves the folder the move made", 'clean.py', [("    if r.get('made'):", "    if False:")], [R+'[split]']),
    Mutation("an emptied class folder stays", 'clean.py', [("_drop_if_empty(src.parent)", "None")], [R+'[split]']),
    Mutation("the undo does not make the emptied folder again", 'clean.py', [("        if not src.parent.is_dir():   # the class folder", "        if False:   # the class folder")], [R+'[split]']),
    Mutation("the relabel menu parses file names in every layout", 'clean.py', [("    if layout is not None: return sorted(layout.classes, key=lambda b: (b.lower(), b))\n", "")], [R+'[folders]']),
    Mutation("a class name that is no folder name is not checked", 'clean.py', [("        try: check_class_name(label if isinstance(label, str) else '', where)\n        except BadLayout as e:", "        try: pass\n        except BadLayout as e:")], [X+'[folders]']),
    Mutation("a relabel to the photo's own class is not refused", 'clean.py', [("    if own == label:\n", "    if False:\n")], [X+'[folders]']),
    Mutation("the undo does not check the CSV row", 'clean.py', [("    if state[key] == r['new']:", "    if True:")], [L+'test_a_csv_row_changed_by_hand_stops_the_undo']),
    Mutation("the report's layout is ignored (PETS always)", 'clean.py', [("    if rec['kind'] == 'pets': return None", "    if True: return None")], [R+'[folders]', L+'test_a_report_of_another_layout_is_refused']),
    Mutation("the relabelled row ends in \\n, whatever the CSV's", 'clean.py', [("csv.writer(buf, lineterminator=next((e for e in ('\\r\\n', '\\n', '\\r') if raw.endswith(e)), ''))", "csv.writer(buf, lineterminator='\\n')")], [R+'[csv]']),
    Mutation("a dropped row goes back at the end", 'clean.py', [("self.records.insert(min(index, len(self.records)), csv_records(raw)[0])", "self.records.append(csv_records(raw)[0])")], [L+'test_a_csv_removal_drops_the_row_and_the_undo_puts_both_back']),
    Mutation("a layout of another kind is not refused", 'clean.py', [("    if lay.kind != rec['kind']:", "    if False:")], [L+'test_a_report_of_another_layout_is_refused']),
    Mutation("--clean DATA of a CSV goes to DATA/images", 'clean_cli.py', [("Path(data) if report_layout(report)['kind'] == 'csv' else pets_images_path(data)", "pets_images_path(data)")], [L+'test_the_cleaner_page_reads_a_csv_from_data_itself']),
]

# --- issue 29: the layouts and pet_breeds_train on them ---------------------------------------------------------------
LT = 'tests/test_layouts.py::'
MUTATIONS += [
    Mutation("a given validation folder is split at random", 'layout.py',
             [("            return GrandparentSplitter(train_name=self.folders['train'], valid_name=self.folders['valid'])",
               "            return RandomSplitter()")],
             [LT + 'test_split_folders_fine_tune_on_their_validation_folder']),
    Mutation("hidden folders are classes", 'layout.py',
             [("    return name.startswith('.') or name == '__MACOSX' or name in OWN_FOLDERS",
               "    return name == '__MACOSX' or name in OWN_FOLDERS")],
             [LT + 'test_each_layout_trains_the_probe[folders]']),
    Mutation("photos nested deeper are read as the class's", 'layout.py', [("    if deep:\n", "    if False:\n")],
             [LT + 'test_bad_layouts_are_refused_in_one_line[photos nested deeper]']),
    Mutation("a link may leave DATA", 'layout.py',
             [("    if not p.resolve().is_relative_to(root.resolve()):", "    if False:")],
             [LT + 'test_bad_layouts_are_refused_in_one_line[a link leaving DATA]']),
    Mutation("classes differing only in case pass", 'layout.py', [("        if other != c:\n", "        if False:\n")],
             [LT + 'test_bad_layouts_are_refused_in_one_line[classes differing in case]']),
    Mutation("fewer photos than a batch keep the batch size", 'data.py', [("        bs = len(train)\n", "        pass\n")],
             [LT + 'test_fewer_photos_than_a_batch_still_train']),
    Mutation("an empty validation split goes on to train", 'data.py',
             [("    if need_valid and not len(valid_idx):", "    if False:")],
             [LT + 'test_a_handful_of_photos_gives_a_result_or_one_line[finetune]']),
    Mutation("photos loose in a split folder", 'layout.py', [("    if not dirs:   # a split folder", "    if False:   #")],
             [LT + 'test_bad_layouts_are_refused_in_one_line[photos loose in train/]']),
    Mutation("photos beside split folders are dropped", 'layout.py',
             [("    if images:\n        raise BadLayout(f\"{shown(root)}: photos at the top", "    if False:\n        raise BadLayout(f\"{shown(root)}: photos at the top")],
             [LT + 'test_bad_layouts_are_refused_in_one_line[a photo beside split folders]']),
    Mutation("one photo a class goes on to make --out", 'train_cli.py',
             [("    if max(counts.values()) < 2:", "    if False:")],
             [LT + 'test_bad_layouts_are_refused_in_one_line[fewer photos than classes]']),
    Mutation("a command's warnings in Python's two lines", 'cli.py',
             [("            warnings.showwarning = one_line_warning(self.prog)\n", "")],
             [LT + 'test_fewer_photos_than_a_batch_still_train']),
    Mutation("a page's kernel imports nbformat", 'widget.py',
             [("from PIL import Image\nimport ipywidgets as widgets\n",
               "from PIL import Image\nimport ipywidgets as widgets\nimport nbformat\n")],
             ['nbs/60_tools.widget.ipynb']),
    Mutation("the folder is detected twice", 'train_cli.py',
             [("    layout, source = find_images(data, labels, label, download=yes)\n",
               "    layout, source = find_images(data, labels, label, download=yes)\n" * 2)],
             [LT + 'test_each_layout_trains_the_probe[split]']),
    Mutation("a class called images is read as PETS's images/", 'data.py',
             [("    return p/'images' if folders <= {'images', 'annotations'} else p", "    return p/'images'")],
             ['nbs/13_data.ipynb']),
    Mutation("the probe warns of batches it never makes", 'probe.py',
             [("        warnings.filterwarnings('ignore', message=f'.* {SMALL_BATCH}')\n", "")],
             [LT + 'test_a_handful_of_photos_gives_a_result_or_one_line[probe]']),
    Mutation("auto fine-tunes without the weights", 'probe.py',
             [("and finetune_arch is not None and not weights_here(finetune_arch):", "and False:")],
             [LT + 'test_auto_probes_when_the_fine_tuning_weights_are_missing']),
    Mutation("test/ is not scored", 'train_cli.py', [("    if not layout.test: return None", "    return None")],
             [LT + 'test_each_layout_trains_the_probe[split]']),
    Mutation("cat vs dog scored on any classes", 'probe.py',
             [("pets_breeds = dls.layout.kind == 'pets' and label == 'breed'", "pets_breeds = label == 'breed'")],
             [LT + 'test_each_layout_trains_the_probe[folders]']),
    Mutation("a photo replaced after the scan reads its stale copy", 'data.py',
             [("        if copy is not None and _stamp(o) == self.stamps[Path(o)]:", "        if copy is not None:")],
             ['nbs/13_data.ipynb', 'tests/test_features.py::test_changed_image_content_is_recomputed_and_only_it']),
    Mutation("an exported probe is rebuilt at its backbones' training size", 'probe.py',
             [("scale=meta.get('backbone_scale', 1.0))", "scale=1.0)")],
             ['nbs/43_modes.probe.ipynb',
              'tests/test_probe.py::test_the_exported_probe_is_the_fitted_one_in_pytorch_and_onnx']),
    Mutation("the probe's features are taken at the training size", 'probe.py',
             [("    branches = [BackboneFeatures(b, pretrained=True, scale=scale) for b in backbones]",
               "    branches = [BackboneFeatures(b, pretrained=True) for b in backbones]")],
             ['nbs/43_modes.probe.ipynb']),
    Mutation("the probe's export leaves out its scale", 'probe.py',
             [("extra={'backbones': rec['backbones'], 'backbone_scale': scale,",
               "extra={'backbones': rec['backbones'],")],
             ['nbs/43_modes.probe.ipynb',
              'tests/test_probe.py::test_the_exported_probe_is_the_fitted_one_in_pytorch_and_onnx']),
    Mutation("the probe's export leaves out its scale (end to end)", 'probe.py',
             [("extra={'backbones': rec['backbones'], 'backbone_scale': scale,",
               "extra={'backbones': rec['backbones'],")],
             ['tests/test_probe.py::test_no_refit_keeps_the_validation_split']),
    Mutation("a probe predicts in bf16 where bf16 is native", 'inference.py',
             [("    return 'probe' if meta.get('mode') == 'probe' else 'predict'", "    return 'predict'")],
             ['nbs/32_predict.inference.ipynb',
              'tests/test_precision.py::test_auto_predicts_a_probe_in_fp32_even_with_native_bf16']),
    Mutation("the probe's estimate follows --size, not its backbones' own sizes", 'train_cli.py',
             [("* (ifnone(side, ifnone(size, get_arch(a).size)) / get_arch(a).size) ** 2",
               "* (ifnone(size, get_arch(a).size) / get_arch(a).size) ** 2")],
             ['nbs/44_modes.train_cli.ipynb']),
]

# --- running ------------------------------------------------------------------------------------------

PRELOAD = ['torch', 'torchvision', 'fastai.vision.all', 'fastai.callback.training', 'fastai.callback.fp16', 'pytest',
           'hypothesis', 'safetensors.torch', 'matplotlib.pyplot', 'PIL.Image', 'numpy']

def _env(copy:Path) -> dict:
    return {'PYTHONPATH': str(copy), 'PYTHONDONTWRITEBYTECODE': '1', 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1'),
            'MPLBACKEND': 'Agg', 'PET_BREEDS_CACHE': str(copy/'.pb-cache')}   # notebooks: an empty cache, as in tests/run.sh

def _pytest_args(tests) -> list: return ['-x', '-q', '-p', 'no:cacheprovider', '-p', 'no:randomly', *tests]

def _notebooks(tests) -> tuple:
    "`(notebooks, pytest targets)` of `tests`."
    return [t for t in tests if t.endswith('.ipynb')], [t for t in tests if not t.endswith('.ipynb')]

def _run_in_process(tests) -> int:
    "Run `tests` here (the forked child): 1 if a notebook fails (its cells as `nbdev_test` runs them), else pytest's exit code."
    nbs, py = _notebooks(tests)
    if nbs:
        from nbdev.config import get_config
        from nbdev.test import test_nb
        flags = get_config().tst_flags.split()
        for nb in nbs:
            ok, secs = test_nb(Path(nb).resolve(), skip_flags=flags)
            print(f"{nb}: {'passed' if ok else 'FAILED'} ({secs:.0f} s)", flush=True)
            if not ok: return 1
    if not py: return 0
    import pytest
    return int(pytest.main(_pytest_args(py)))

CHECK = "import pet_breeds, sys; from pathlib import Path; f = Path(pet_breeds.__file__).resolve(); " \
        "print('pet_breeds from', f, flush=True); sys.exit(0 if f.is_relative_to(Path({copy!r}).resolve()) else 99)"

def _child(copy:Path, tests, log:Path):
    "In the forked child: run pytest on `copy`'s tests against `copy`'s package; never returns."
    try:
        os.setpgid(0, 0)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1); os.dup2(fd, 2)
        os.chdir(copy)
        os.environ.update(_env(copy))
        sys.path.insert(0, str(copy))
        sys.dont_write_bytecode = True
        import importlib; importlib.invalidate_caches()
        import pet_breeds
        where = Path(pet_breeds.__file__).resolve()
        print('pet_breeds from', where, flush=True)
        if not where.is_relative_to(copy.resolve()): os._exit(99)
        rc = _run_in_process(tests)
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(rc)
    except BaseException as e:
        print(f'runner error: {type(e).__name__}: {e}', flush=True)
        os._exit(98)

def _wait(pid:int, timeout:float):
    "The child's exit status, or None when it ran past `timeout` (then it and its process group are killed)."
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done: return os.waitstatus_to_exitcode(status)
        time.sleep(0.2)
    try: os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError: pass
    os.waitpid(pid, 0)
    return None

def run_tests(copy:Path, tests, log:Path, fork:bool=True, timeout:float=TIMEOUT):
    "pytest's exit code for `tests` run against `copy` (None: timed out)."
    if fork:
        sys.stdout.flush(); sys.stderr.flush()
        pid = os.fork()
        if pid == 0: _child(copy, tests, log)
        return _wait(pid, timeout)
    env = {**os.environ, **_env(copy)}
    with open(log, 'w') as out:
        check = subprocess.run([sys.executable, '-c', CHECK.format(copy=str(copy))], cwd=copy, env=env, stdout=out, stderr=out)
        if check.returncode: return 99
        nbs, py = _notebooks(tests)
        cmds = [[str(Path(sys.executable).parent/'nbdev_test'), '--n_workers', '1', '--path', nb] for nb in nbs]
        if py: cmds.append([sys.executable, '-m', 'pytest', *_pytest_args(py)])
        deadline = time.monotonic() + timeout
        for cmd in cmds:
            p = subprocess.Popen(cmd, cwd=copy, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            try: rc = p.wait(timeout=max(deadline - time.monotonic(), 1))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL); p.wait()
                return None
            if rc: return 1 if cmd[0].endswith('nbdev_test') else rc
        return 0

def mutate_notebooks(copy:Path, m:Mutation):
    "The same edits in the source notebooks of `copy`: a notebook runs its own export cells, not the module."
    import json
    for old, new in m.edits:
        found = 0
        for f in sorted((copy/'nbs').glob('*.ipynb')):
            nb = json.loads(f.read_text())
            cells = [c for c in nb['cells'] if c['cell_type'] == 'code' and old in ''.join(c['source'])]
            for c in cells: c['source'] = ''.join(c['source']).replace(old, new).splitlines(keepends=True)
            if cells: f.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n'); found += len(cells)
        if found != 1: raise LookupError(f"nbs/: expected the text in one code cell, found it in {found}: {old!r}")

def fresh_copy(dest:Path) -> Path:
    "A copy of the checkout at `dest` (the tests need nothing beside it)."
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(ROOT, dest, ignore=IGNORE, symlinks=True)
    return dest

def outcome(rc) -> str:
    if rc is None: return 'killed (timeout)'
    return {0: 'SURVIVED', 1: 'killed'}.get(rc, f'error (pytest exit {rc})')

def run(mutations, fork=True, keep=False, baseline=True, timeout=TIMEOUT):
    SCRATCH.mkdir(parents=True, exist_ok=True)
    if fork:
        import importlib
        for m in PRELOAD: importlib.import_module(m)
    rows = []
    if baseline:   # the chosen tests pass on the unmutated copy, or the run means nothing
        tests = list(dict.fromkeys(t for _, m in mutations for t in m.tests))
        copy = fresh_copy(SCRATCH/'baseline')
        t0 = time.monotonic()
        rc = run_tests(copy, tests, SCRATCH/'baseline.log', fork, timeout * 3)
        print(f"baseline: {len(tests)} test targets {'pass' if rc == 0 else f'FAIL (exit {rc})'} "
              f"on the unmutated copy ({time.monotonic() - t0:.0f} s); log {SCRATCH/'baseline.log'}", flush=True)
        if rc != 0: sys.exit("the unmutated code fails its tests: fix that first")
        if not keep: shutil.rmtree(copy, ignore_errors=True)
    for i, m in mutations:
        copy, log, t0 = SCRATCH/str(i), SCRATCH/f'{i}.log', time.monotonic()
        try: mutated = m.apply((ROOT/'pet_breeds'/m.file).read_text())
        except LookupError as e:
            rows.append((i, m, 'error (does not apply)', 0.)); print(f'{i:>2} {e}', flush=True); continue
        fresh_copy(copy)
        (copy/'pet_breeds'/m.file).write_text(mutated)
        try:
            if _notebooks(m.tests)[0]: mutate_notebooks(copy, m)
        except LookupError as e:
            rows.append((i, m, 'error (does not apply)', 0.)); print(f'{i:>2} {e}', flush=True); continue
        res = outcome(run_tests(copy, m.tests, log, fork, timeout))
        rows.append((i, m, res, time.monotonic() - t0))
        print(f"{i:>2} {res:<17} {time.monotonic() - t0:5.0f} s  {m.name}", flush=True)
        if not keep: shutil.rmtree(copy, ignore_errors=True)
    return rows

def table(rows) -> str:
    w = max(len(m.name) for _, m, *_ in rows)
    lines = [f"{'#':>2}  {'mutation':<{w}}  {'module':<12}  {'issue':<5}  {'result':<17}  {'s':>4}  tests",
             '-' * (w + 60)]
    for i, m, res, secs in rows:
        lines.append(f"{i:>2}  {m.name:<{w}}  {m.file:<12}  {'yes' if m.issue else '':<5}  {res:<17}  {secs:4.0f}  "
                     + ', '.join(t.replace('tests/', '') for t in m.tests))
    killed = sum(r.startswith('killed') for _, _, r, _ in rows)
    issue = [(r) for _, m, r, _ in rows if m.issue]
    lines += ['', f"score: {killed}/{len(rows)} mutants killed ({100 * killed / max(len(rows), 1):.0f}%); "
                  f"issue 10's: {sum(r.startswith('killed') for r in issue)}/{len(issue)}"]
    survived = [f'{i} {m.name}' for i, m, r, _ in rows if not r.startswith('killed')]
    if survived: lines.append('not killed: ' + '; '.join(survived))
    return '\n'.join(lines)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('which', nargs='*', type=int, help='numbers of the mutations to run (default: all)')
    ap.add_argument('--list', action='store_true', help='list the mutations and whether each applies, run nothing')
    ap.add_argument('--keep', action='store_true', help=f'keep the scratch copies under {SCRATCH}')
    ap.add_argument('--no-fork', action='store_true', help='a fresh python per mutant instead of forking a preloaded one')
    ap.add_argument('--no-baseline', action='store_true', help='skip the run of the chosen tests on the unmutated code')
    ap.add_argument('--timeout', type=float, default=TIMEOUT, help='seconds per mutant')
    a = ap.parse_args()
    chosen = [(i, m) for i, m in enumerate(MUTATIONS, 1) if not a.which or i in a.which]
    if a.list:
        for i, m in chosen:
            try: m.apply((ROOT/'pet_breeds'/m.file).read_text()); ok = 'applies'
            except LookupError as e: ok = f'DOES NOT APPLY: {e}'
            print(f"{i:>2} {'[issue] ' if m.issue else ''}{m.name} ({m.file}): {ok}\n     tests: {' '.join(m.tests)}")
        return
    t0 = time.monotonic()
    rows = run(chosen, fork=not a.no_fork, keep=a.keep, baseline=not a.no_baseline, timeout=a.timeout)
    print('\n' + table(rows))
    print(f"\n{len(rows)} mutants in {(time.monotonic() - t0) / 60:.1f} min")
    if any(m.issue and not r.startswith('killed') for _, m, r, _ in rows): sys.exit(1)

if __name__ == '__main__': main()

