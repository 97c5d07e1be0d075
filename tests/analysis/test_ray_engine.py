"""The pass on Ray (--engine ray) writes the same run as the local engine.

A real local Ray cluster is started by this module (127.0.0.1 only, no dashboard) and stopped at
the end; the bundled sample is analysed on it and compared with the local engine's run: same rows
in the same order, probabilities within 1e-5, same skipped files with the same reasons, the same
sections with the same results, the same thumbnails.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from analysis import schema
from analysis.pipeline.engine import AnalysisConfig, analyze

ray = pytest.importorskip("ray", reason="the ray extra (make test installs it)")

#: Columns that measure this machine, not the images.
TIMING = [schema.LATENCY_MS]
#: Embeddings are stored as float16 and a batch of another size can round one of a million
#: values to the neighbouring float16 (measured: 3 of 1.2M reference values, 1.2e-4 apart);
#: a cosine computed from stored embeddings moves by up to about that much, not 1e-5.
FLOAT16_ATOL = 2e-3
FROM_EMBEDDINGS = {schema.REFERENCE_DISTANCE: 1e-3}


@pytest.fixture(scope="module")
def local_ray():
    from analysis.loading.ray_pass import ray_session

    with ray_session(num_cpus=2):
        nodes = ray.nodes()
        assert [n["NodeManagerAddress"] for n in nodes] == ["127.0.0.1"]
        assert _listening_addresses(ray) <= {"127.0.0.1", "::ffff:127.0.0.1"}
        yield
    assert not ray.is_initialized()


def _listening_addresses(ray) -> set[str]:
    """Addresses Ray's own processes listen on (from /proc: the raylet, GCS, workers)."""
    import os
    import socket
    import struct

    inodes = set()
    for pid in _ray_pids(ray):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    out = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        with open(f"/proc/net/{table}") as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[3] != "0A" or parts[9] not in inodes:  # 0A = LISTEN
                    continue
                raw = bytes.fromhex(parts[1].split(":")[0])
                if family == socket.AF_INET:
                    out.add(socket.inet_ntop(family, raw[::-1]))
                else:
                    words = struct.unpack("<4I", raw)
                    addr = socket.inet_ntop(family, struct.pack(">4I", *words))
                    out.add(addr)
    assert out, "found none of Ray's listening sockets"
    return out


def _ray_pids(ray) -> set[int]:
    """This Ray instance's processes: the children of its raylet and GCS, and the driver."""
    import os

    session = ray._private.worker._global_node.get_session_dir_path()
    pids = {os.getpid()}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        if session in cmd or os.path.basename(session) in cmd:
            pids.add(int(pid))
    return pids


def assert_same_run(a, b):
    sa, sb = a.samples, b.samples
    assert list(sa.columns) == list(sb.columns)
    assert sa[schema.SAMPLE_ID].tolist() == sb[schema.SAMPLE_ID].tolist()  # same rows, order
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)
    for col in sa.columns.drop(TIMING):
        x, y = sa[col], sb[col]
        if pd.api.types.is_float_dtype(x):
            atol = FROM_EMBEDDINGS.get(col, 1e-5)
            np.testing.assert_allclose(x.to_numpy(), y.to_numpy(), atol=atol, err_msg=col)
        else:
            assert x.tolist() == y.tolist(), col
    ma, mb = a.manifest, b.manifest
    assert ma["skipped"] == mb["skipped"] and ma["n_skipped"] == mb["n_skipped"]
    assert ma["reference_skipped"] == mb["reference_skipped"]
    assert {k: v["status"] for k, v in ma["sections"].items()} == {
        k: v["status"] for k, v in mb["sections"].items()
    }
    assert ma["config"]["engine"] == "local" and mb["config"]["engine"] == "ray"
    for ea, eb in ((a.embeddings, b.embeddings), (a.reference_embeddings, b.reference_embeddings)):
        assert (ea is None) == (eb is None)
        if ea is not None:
            np.testing.assert_allclose(
                ea.astype(np.float32), eb.astype(np.float32), atol=FLOAT16_ATOL
            )
    for sid in sa[schema.SAMPLE_ID].iloc[:: max(1, len(sa) // 20)]:
        assert a.thumbnail(sid) == b.thumbnail(sid) is not None


@pytest.mark.slow
# two analyses of the sample (the local one is the session's sample_run, maybe made here) on a
# busy 2-core machine took more than the suite's 900 s; a slow run is not a wrong one
@pytest.mark.timeout(1800)
def test_ray_run_equals_the_local_run_on_the_sample(local_ray, sample_run, tmp_path):
    from analysis.cli import sample_config

    run = analyze(replace(sample_config(), engine="ray"), runs_dir=tmp_path / "ray")
    assert run.run_id == sample_run.run_id  # the engine does not change what a run is
    assert_same_run(sample_run, run)
    for name in (schema.SLICES, schema.LABEL_ISSUES, schema.DUPLICATES, schema.OUTLIERS):
        pd.testing.assert_frame_equal(run.table(name), sample_run.table(name), check_exact=False)
    assert run.json(schema.METRICS) == sample_run.json(schema.METRICS)
    ref_a, ref_b = sample_run.reference, run.reference
    assert ref_a[schema.SAMPLE_ID].tolist() == ref_b[schema.SAMPLE_ID].tolist()
    assert ref_a[schema.PRED].tolist() == ref_b[schema.PRED].tolist()


def test_ray_skips_the_same_files_for_the_same_reasons(
    local_ray, image_folder, tiny_resnet, tmp_path
):
    ant = image_folder / "ant"
    (ant / "corrupt.png").write_bytes(b"\x89PNG not really" * 10)
    good = (ant / "ant_00.png").read_bytes()
    (ant / "truncated.png").write_bytes(good[: len(good) // 3])
    (ant / "zero.png").write_bytes(b"")
    cfg = AnalysisConfig(
        data=str(image_folder),
        model=str(tiny_resnet),
        arch="resnet18",
        resize=32,
        no_crop=True,
        umap=False,
        batch_size=4,  # several batches, one of them with nothing readable in it
    )
    a = analyze(cfg, runs_dir=tmp_path / "local")
    b = analyze(replace(cfg, engine="ray", ray_workers=2), runs_dir=tmp_path / "ray")
    assert len(a.manifest["skipped"]) == 3
    assert_same_run(a, b)


def test_engine_options_are_checked():
    from analysis.pipeline.engine import check_config

    with pytest.raises(ValueError, match="--engine is 'spark'; expected one of local, ray"):
        check_config(AnalysisConfig(data="x", model="m", engine="spark"))
    with pytest.raises(ValueError, match="--ray-address needs --engine ray"):
        check_config(AnalysisConfig(data="x", model="m", ray_address="ray://head:10001"))
    with pytest.raises(ValueError, match="--ray-workers must be >= 1, got 0"):
        check_config(AnalysisConfig(data="x", model="m", engine="ray", ray_workers=0))
