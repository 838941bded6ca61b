"""Serving stage: engines handed to Triton Inference Server (never a server of rtresnet's own).

``serve`` / ``start_server`` run a model behind PyTriton's bundled tritonserver; ``export_triton`` writes a model
repository for the NGC tritonserver container; ``loadtest`` measures a running Triton over HTTP or gRPC.
"""

from rtresnet.serving.client import classify, remote_model_info
from rtresnet.serving.loadtest import LoadTestResult, loadtest
from rtresnet.serving.repository import TritonRepository, export_triton
from rtresnet.serving.server import Endpoints, ServeSettings, serve, start_server

__all__ = ["Endpoints", "LoadTestResult", "ServeSettings", "TritonRepository", "classify", "export_triton", "loadtest",
           "remote_model_info", "serve", "start_server"]
