"""The committed protobuf modules are exactly what `make proto` generates from protos/."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PB = ROOT / "src" / "evgrid" / "transport" / "pb"


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'protos'}",
         f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}",
         str(ROOT / "protos" / "evgrid" / "v1" / "coordinator.proto")],
        check=True,
    )
    for name in ["coordinator_pb2.py", "coordinator_pb2.pyi", "coordinator_pb2_grpc.py"]:
        fresh = (tmp_path / "evgrid" / "v1" / name).read_text()
        fresh = re.sub(r"^from evgrid\.v1 import", "from evgrid.transport.pb import", fresh,
                       flags=re.M)
        assert (PB / name).read_text() == fresh, f"{name} is stale: run `make proto`"


def test_enums_and_services_follow_buf_style() -> None:
    from evgrid.transport.pb import coordinator_pb2 as pb

    for enum in pb.DESCRIPTOR.enum_types_by_name.values():
        zero = enum.values_by_number[0].name
        assert zero.endswith("_UNSPECIFIED"), zero
    for method in pb.DESCRIPTOR.services_by_name["CoordinatorService"].methods:
        assert method.input_type.name == f"{method.name}Request"
        assert method.output_type.name == f"{method.name}Response"
