FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY adapters ./adapters
COPY config ./config
COPY tools ./tools
RUN pip install --no-cache-dir . && useradd --system --home /app threadguard
USER threadguard
ENTRYPOINT ["threadguard"]
