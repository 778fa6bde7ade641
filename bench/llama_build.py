"""Which llama.cpp a bench's figures are against: llama-cpp-python's
version, where Python found it, and the CPU features its llama.cpp was
built for, which need not be the machine's (scripts/bootstrap builds it
for AVX2 on every x86-64 machine)."""
import os


def describe():
    try:
        import llama_cpp
    except ImportError:
        return "llama.cpp: llama-cpp-python is missing"
    info = llama_cpp.llama_print_system_info().decode()
    cpu = next((line.split(":", 1)[1] for line in info.splitlines() if line.startswith("CPU :")), info)
    feats = [f.split("=")[0].strip() for f in cpu.split("|") if f.strip().endswith("= 1")]
    return "llama.cpp: llama-cpp-python %s from %s, built for %s" % (
        llama_cpp.__version__, os.path.dirname(llama_cpp.__file__), " ".join(feats))
