"""llama.cpp's server for the embedded endpoint, in a process of its own (`python -m runner.llm.engine`), so
that a model or a library that crashes (a corrupt file, a CPU without the instructions the prebuilt wheel
uses) takes down only itself: the front (runner.llm.serve) says why, and starts it again after a crash that
followed a good start. Reads EmbeddedOptions from its environment, prints the URL of its internal loopback
port on its first line once the model has loaded, then serves until it is terminated (it dies with the front).
"""
from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from .embedded import EmbeddedOptions, model_file, model_name, not_installed


def start(options: EmbeddedOptions) -> Any:
    """llama.cpp's server, loaded and listening on 127.0.0.1 (an ephemeral port); its URL is
    `listening_address`."""
    import xllamacpp

    path = model_file(options)
    if path is None:
        raise FileNotFoundError(not_installed(options))
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.model_alias = {model_name(options)}
    params.n_parallel = options.parallel
    params.n_ctx = options.context * options.parallel  # each slot gets its own `context` tokens
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = options.threads
    params.n_threads_http = 2 * options.parallel + 4  # streams waiting for a slot each hold one
    params.hostnames = ["127.0.0.1"]
    params.ui = False
    params.verbosity = 0
    return xllamacpp.Server(params)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the front's to handle; it then ends this process
    try:
        server = start(EmbeddedOptions())
    except Exception as e:
        print(e, file=sys.stderr, flush=True)
        sys.exit(3)
    print(server.listening_address, flush=True)
    threading.Event().wait()  # SIGTERM (the front, or its death) ends the process


if __name__ == "__main__":
    main()
