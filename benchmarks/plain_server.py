"""Reference server for benchmarks/serve_load.py: one exported policy in a plain single-process FastAPI/uvicorn app.

    python benchmarks/plain_server.py --agent models/ppo --port 8100

Same request and response bodies and the same feature code as the Serve app, without routing, batching or hops.
"""

from __future__ import annotations

import argparse
import uuid

import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException

from serving.agents import PolicyAgent
from serving.schemas import AllocateRequest, AllocateResponse


def make_app(agent_dir: str) -> FastAPI:
    import torch

    torch.set_num_threads(1)
    agent = PolicyAgent(agent_dir)
    app = FastAPI()

    @app.post("/allocate", response_model=AllocateResponse)
    def allocate(body: AllocateRequest) -> AllocateResponse:
        assets = list(agent.info.assets)
        if set(body.prices) != set(assets):
            raise HTTPException(422, "prices: wrong assets")
        closes = np.column_stack([np.asarray(body.prices[a]) for a in assets])
        held = (
            np.full(len(assets), 1.0 / len(assets))
            if body.weights is None
            else np.asarray([body.weights[a] for a in assets])
        )
        weights = agent.weights_batch([closes], [held])[0]
        return AllocateResponse(
            weights=dict(zip(assets, weights.tolist())),
            agent=agent.info.name,
            model_version=agent.info.model_version,
            request_id=uuid.uuid4().hex,
        )

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--agent", required=True)
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    uvicorn.run(make_app(args.agent), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
