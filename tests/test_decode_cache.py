import numpy as np
import pytest
import torch
from PIL import Image

from cskd.config import resolve
from cskd.data.decode_cache import DecodeCache
from cskd.data.loaders import eval_batches
from cskd.data.sets import load_bundle
from cskd.training.trainer import run_training


def _images(folder, sizes):
    rng = np.random.default_rng(0)
    files = []
    for i, (w, h) in enumerate(sizes):
        # smooth images, so resampling differences between PIL and tensor resizes stay small
        base = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((w, h), Image.BILINEAR)
        path = folder / f"{i}.jpg"
        img.save(path, quality=95)
        files.append(str(path))
    return files


def test_cache_keeps_aspect_shrinks_to_short_side_256_and_is_built_once(tmp_path):
    files = _images(tmp_path, [(400, 300), (30, 40), (512, 1024)])
    cache = DecodeCache(files, tmp_path / "cache")
    assert [tuple(r[1:]) for r in cache.index] == [(256, 341), (40, 30), (512, 256)]
    with Image.open(files[1]) as im:
        assert torch.equal(cache.image(1), torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1))
    stamp = (cache.folder / "pixels.u8").stat().st_mtime_ns
    again = DecodeCache(files, tmp_path / "cache")
    assert (again.folder / "pixels.u8").stat().st_mtime_ns == stamp
    assert torch.equal(again.image(2), cache.image(2))


@pytest.mark.slow  # trains
def test_cached_evaluation_matches_decoding_the_files(tmp_path):
    root = tmp_path / "set"
    for split, n in (("train", 4), ("test", 2)):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            _images(root / split / c, [(300 + 7 * i, 280) for i in range(n)])
    bundle = load_bundle("imagefolder", data_root=str(root), val_fraction=0.5)
    plain = next(iter(eval_batches(bundle, bundle.test, batch_size=8, device=torch.device("cpu"), workers=0)))[0]
    bundle.decode_cache = tmp_path / "cache"
    cached = next(iter(eval_batches(bundle, bundle.test, batch_size=8, device=torch.device("cpu"), workers=0)))[0]
    assert cached.shape == plain.shape == (4, 3, 224, 224)
    assert (cached - plain).abs().mean() < 0.05  # same pixels up to resampling rounding
    cfg = resolve({"dataset": "imagefolder", "data_root": str(root), "model": "small", "epochs": 1, "batch_size": 4,
                   "val_fraction": 0.5, "workers": 0, "out": str(tmp_path / "run")})
    run_training(cfg, progress=False)
    assert len(list((root / ".cskd-cache").iterdir())) == 3  # train, val and test file lists
    from cskd.evaluation.predict import predict

    z = np.load(predict(tmp_path / "run", progress=False))
    assert z["images"].shape == (4, 64, 64, 3) and z["logits"].shape == (4, 2)  # 64-px thumbnails of file sets


@pytest.mark.slow  # trains
def test_device_path_for_224_px_sets_matches_the_host_test_transform(tmp_path):
    from cskd.data.loaders import BatchSpec, TensorBatches
    from cskd.data.placement import bundle_for

    root = tmp_path / "set"
    for split, n in (("train", 4), ("test", 2)):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            _images(root / split / c, [(300 + 37 * i, 280 + 11 * i) for i in range(n)])
    base = {"dataset": "imagefolder", "data_root": str(root), "model": "small", "val_fraction": 0.5, "workers": 0}
    host = bundle_for(resolve({**base, "loader": "host"}))
    dev = bundle_for(resolve({**base, "loader": "device"}))
    assert not host.in_memory and dev.in_memory and dev.test.sizes is not None
    h = next(iter(eval_batches(host, host.test, batch_size=8, device=torch.device("cpu"), workers=0)))[0]
    d = next(iter(eval_batches(dev, dev.test, batch_size=8, device=torch.device("cpu"))))[0]
    assert d.shape == h.shape == (4, 3, 224, 224)
    assert torch.allclose(d, h, atol=1e-4)  # short side 256 after caching: the same pixel-exact crop
    src = TensorBatches(dev, dev.train, BatchSpec(batch_size=4, seed=0, partner="class"), device=torch.device("cpu"))
    b = next(iter(src.epoch(0)))
    assert b.x.shape == b.partner.shape == (4, 3, 224, 224)
    cfg = resolve({**base, "loader": "device", "epochs": 1, "batch_size": 4, "out": str(tmp_path / "run")})
    assert run_training(cfg, progress=False)["test_n"] == 4
    from cskd.evaluation.predict import predict

    z = np.load(predict(tmp_path / "run", progress=False))
    assert z["images"].shape == (4, 64, 64, 3)  # thumbnails, not the padded tensors


def test_decode_cache_dir_puts_the_cache_there_and_nothing_under_the_data_root(tmp_path):
    """`cskd train --decode-cache-dir DIR`: the decode caches of the train, val and test file lists
    are built in DIR; DATA_ROOT/.cskd-cache (the default) is not made."""
    from cskd.cli.main import build_parser
    from cskd.cli.train_options import config_from_args
    from cskd.data.placement import bundle_for

    root, where = tmp_path / "set", tmp_path / "elsewhere" / "cache"
    for split, n in (("train", 4), ("test", 2)):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            _images(root / split / c, [(40 + 3 * i, 30) for i in range(n)])
    args = build_parser().parse_args(["train", "--dataset", "imagefolder", "--data-root", str(root), "--model", "small",
                                      "--val-fraction", "0.5", "--workers", "0", "--loader", "device",
                                      "--decode-cache-dir", str(where)])
    cfg = config_from_args(args)
    assert cfg.decode_cache_dir == str(where)
    bundle = bundle_for(cfg)
    assert bundle.decode_cache == where and bundle.test.images.shape[0] == 4
    assert len([p for p in where.iterdir() if (p / "pixels.u8").is_file()]) == 3  # train, val and test
    assert not (root / ".cskd-cache").exists()
    default = bundle_for(config_from_args(build_parser().parse_args(
        ["train", "--dataset", "imagefolder", "--data-root", str(root), "--model", "small", "--val-fraction", "0.5",
         "--workers", "0", "--loader", "device"])))
    assert default.decode_cache == root / ".cskd-cache" and len(list(default.decode_cache.iterdir())) == 3
