import sys, time, cProfile, pstats
from pathlib import Path
sys.path.insert(0, "/work/main/tests/sync")
import orjson, pytest
from client_bench_support import bench_keychain, bench_server, new_workstation, sync_now  # noqa
from desktop_sync_support import bulk_load, location, synthea_clinic
from desktop.sync import server_api
from desktop.store import remote_changes
from desktop.sync import engine as eng

def test_p(bench_server, bench_keychain, shared_data, tmp_path):
    rows = synthea_clinic(shared_data, 20000)
    bulk_load(bench_server.engine, rows)
    bench_server.start()
    ws = new_workstation(bench_server, tmp_path / "ws", "bench.pull")
    t = {"pull": 0.0, "apply": 0.0, "wire": 0.0}
    orig_pull = server_api.ServerApi.sync_pull
    def timed_pull(self, c, l):
        s = time.perf_counter(); r = orig_pull(self, c, l); t["pull"] += time.perf_counter() - s; return r
    server_api.ServerApi.sync_pull = timed_pull
    orig_apply = eng.apply_remote_page
    def timed_apply(*a):
        s = time.perf_counter(); r = orig_apply(*a); t["apply"] += time.perf_counter() - s; return r
    eng.apply_remote_page = timed_apply
    orig_fw = eng.RemoteChange.from_wire
    s0 = time.perf_counter()
    prof = cProfile.Profile(); prof.enable()
    sync_now(ws, page_limit=5000)
    prof.disable()
    print("\ntotal", time.perf_counter() - s0, t)
    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    ws.close()
