#!/usr/bin/env python3
"""What a program under the hook sees of the GPU's memory.

Reports torch.cuda.mem_get_info (cuMemGetInfo) before and after allocating
1 GiB, the device properties' total, and NVML's nvmlDeviceGetMemoryInfo and
_v2 read through ctypes in this same process (NVML is only virtualized if the
hook intercepts it). Judges against --capacity (the scheduler's virtual GPU).

Prints `RESULT torch_ok=0|1 nvml_ok=0|1|absent ...`; exits 0 unless it crashed.
"""

import argparse
import ctypes
import sys

import torch

GIB = 1 << 30
NVML_SUCCESS = 0


class NvmlMemory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong),
                ("used", ctypes.c_ulonglong)]


class NvmlMemoryV2(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint), ("total", ctypes.c_ulonglong),
                ("reserved", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong),
                ("used", ctypes.c_ulonglong)]


def nvml_memory(uuid):
    """(v1 (total, free), v2 (total, free) or None) or a string saying why not."""
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError as err:
        return f"absent ({err})"
    if nvml.nvmlInit_v2() != NVML_SUCCESS:
        return "nvmlInit_v2 failed"
    handle = ctypes.c_void_p()
    if uuid is None or nvml.nvmlDeviceGetHandleByUUID(uuid.encode(), ctypes.byref(handle)) != NVML_SUCCESS:
        if nvml.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(handle)) != NVML_SUCCESS:
            return "no NVML handle for the device"
    v1 = NvmlMemory()
    rc = nvml.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(v1))
    if rc != NVML_SUCCESS:
        return f"nvmlDeviceGetMemoryInfo returned {rc}"
    v2 = None
    try:
        mem2 = NvmlMemoryV2()
        mem2.version = ctypes.sizeof(NvmlMemoryV2) | (2 << 24)
        if nvml.nvmlDeviceGetMemoryInfo_v2(handle, ctypes.byref(mem2)) == NVML_SUCCESS:
            v2 = (mem2.total, mem2.free)
    except AttributeError:
        pass
    nvml.nvmlShutdown()
    return (v1.total, v1.free), v2


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, required=True, help="expected total, bytes")
    args = parser.parse_args()
    cap = args.capacity

    torch.cuda.init()
    free, total = torch.cuda.mem_get_info()
    props = torch.cuda.get_device_properties(0)
    block = torch.ones(GIB // 4, dtype=torch.float32, device="cuda")
    torch.cuda.synchronize()
    free_after, total_after = torch.cuda.mem_get_info()
    block_ok = block.sum().item() == GIB // 4
    torch_ok = (total == cap and total_after == cap and 0 < free <= total
                and free_after <= free - (GIB * 9) // 10 and block_ok)
    print(f"mem_get_info: free={free} total={total}; after 1 GiB: free={free_after} total={total_after}; "
          f"want total == {cap}")
    print(f"device properties total_memory={props.total_memory} (reported, not judged)")

    uuid = None
    if getattr(props, "uuid", None) is not None:
        uuid = "GPU-" + str(props.uuid)
    nvml = nvml_memory(uuid)
    if isinstance(nvml, str):
        print(f"NVML: {nvml}")
        nvml_fields = f"nvml_ok={'absent' if nvml.startswith('absent') else 0} nvml_error={nvml.split()[0]}"
    else:
        (v1_total, v1_free), v2 = nvml
        nvml_ok = v1_total == cap and v1_free <= v1_total and (v2 is None or v2[0] == cap)
        print(f"NVML in this process: v1 total={v1_total} free={v1_free}; v2={v2}; want total == {cap}")
        nvml_fields = (f"nvml_ok={int(nvml_ok)} nvml_total={v1_total} nvml_free={v1_free} "
                       f"nvml_v2_total={v2[0] if v2 else 'none'}")
    print(f"RESULT torch_ok={int(torch_ok)} total={total} free={free} free_after_1g={free_after} "
          f"props_total={props.total_memory} {nvml_fields}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
