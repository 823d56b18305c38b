"""Floor for benchmarks/serve_load.py: the Serve app's topology with no work in it.

    python benchmarks/serve_floor.py --port 8000

Same deployment as ``python -m serving.app`` (Serve's high-throughput mode: HAProxy -> FastAPI ingress replica ->
gRPC -> one deployment replica) and the same request and response bodies, but the deployment returns equal weights
without features or a model, and the ingress does no routing, statistics or metrics. Its latency is what one
ingress-to-agent hop costs on the machine, below which the real app cannot go.
"""

import argparse
import sys
import uuid

from fastapi import FastAPI
from ray import serve

from serving.builder import replica_logging
from serving.lifecycle import serve_until_stopped, use_throughput_mode
from serving.schemas import AllocateRequest, AllocateResponse

api = FastAPI()  # no `from __future__ import annotations` here: FastAPI must see the body type, not a string


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, logging_config=replica_logging())
class Echo:
    async def allocate(self, assets: list[str]) -> list[float]:
        return [1.0 / len(assets)] * len(assets)


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=256, logging_config=replica_logging())
@serve.ingress(api)
class FloorIngress:
    def __init__(self, echo) -> None:
        self.echo = serve.get_deployment_handle(echo.deployment_name, echo.app_name)

    @api.post("/allocate", response_model=AllocateResponse)
    async def allocate(self, body: AllocateRequest) -> AllocateResponse:
        assets = sorted(body.prices)
        weights = await self.echo.allocate.remote(assets)
        return AllocateResponse(
            weights=dict(zip(assets, weights)), agent="echo", model_version="floor", request_id=uuid.uuid4().hex
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    from core.runtime import init_ray

    use_throughput_mode()
    init_ray(dashboard=False)  # a local instance of its own, as every command starts one
    banner = f"floor app on http://127.0.0.1:{args.port}"
    serve_until_stopped(FloorIngress.bind(Echo.bind()), name="floor", host="127.0.0.1", port=args.port, banner=banner)
    return 0


if __name__ == "__main__":
    sys.exit(main())
