"""Data parallel across processes with MindSpore's own launcher: 2 workers with half a batch each
end with identical parameters and record identical trust ratios at every step, equal to one
process trained on the whole batch."""
import os
import shutil
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from ms_lars.conformance.reference import relative_error

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "helpers", "data_parallel_worker.py")
TIMEOUT_S = 300


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_bounded(command, cwd):
    """Runs ``command`` in its own process group; on timeout or failure nothing is left behind."""
    # msrun starts its workers with the `python` on PATH: make that this interpreter.
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"{command[0]} did not finish in {TIMEOUT_S} s:\n{output[-3000:]}")
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)   # any straggling worker of the group
        except ProcessLookupError:
            pass
    return process.returncode, output


@pytest.mark.skipif(shutil.which("msrun") is None and not os.path.exists(os.path.join(os.path.dirname(sys.executable),
                                                                                      "msrun")),
                    reason="msrun (installed with mindspore) not found")
def test_two_msrun_workers_equal_one_process_on_the_whole_batch(tmp_path):
    msrun = shutil.which("msrun") or os.path.join(os.path.dirname(sys.executable), "msrun")
    code, output = run_bounded([msrun, "--worker_num=2", "--local_worker_num=2", f"--master_port={free_port()}",
                                "--master_addr=127.0.0.1", "--join=True", f"--log_dir={tmp_path / 'logs'}",
                                WORKER, str(tmp_path), "distributed"], cwd=tmp_path)
    logs = "".join((tmp_path / "logs" / f).read_text(errors="replace")[-2000:]
                   for f in sorted(os.listdir(tmp_path / "logs"))) if (tmp_path / "logs").exists() else ""
    assert code == 0, output[-3000:] + logs
    code, output = run_bounded([sys.executable, WORKER, str(tmp_path), "single"], cwd=tmp_path)
    assert code == 0, output[-3000:]
    for name in ("lars", "lamb"):
        workers = [np.load(tmp_path / f"{name}-distributed-rank{rank}.npz") for rank in (0, 1)]
        single = np.load(tmp_path / f"{name}-single-rank0.npz")
        for key in single.files:
            np.testing.assert_array_equal(workers[0][key], workers[1][key], err_msg=f"{name}: workers differ on {key}")
            np.testing.assert_allclose(workers[0][key], single[key], rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name}: 2 workers vs 1 process on {key}")
        records = [(tmp_path / f"{name}-distributed-rank{rank}.csv").read_text() for rank in (0, 1)]
        assert records[0] == records[1], f"{name}: the workers recorded different trust ratios"
        rows = read_record_csv(records[0])
        single_rows = read_record_csv((tmp_path / f"{name}-single-rank0.csv").read_text())
        assert len(rows) == 5 * len(single.files) and rows.keys() == single_rows.keys()
        for key, values in rows.items():
            assert relative_error(values, single_rows[key]) <= 1e-5, f"{name}: record {key} differs from 1 process"


def read_record_csv(text):
    """{(step, parameter): [weight_norm, other_norm, trust_ratio]} from a TrustRatioMonitor CSV."""
    lines = text.strip().splitlines()
    assert lines[0] == "step,parameter,weight_norm,other_norm,trust_ratio"
    return {tuple(line.split(",")[:2]): [float(v) for v in line.split(",")[2:]] for line in lines[1:]}
