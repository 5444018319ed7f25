"""The Python baseline for the create_task benchmark: POST /api/tasks in FastAPI.

It does what task-api's create does at the least: verify the HS256 bearer token, validate the
body (title 1-200 characters after trimming, description up to 10,000, priority enum, optional
RFC 3339 due date, unknown fields rejected), then one Dapr state transaction and one publish
through the sidecar (httpx, one pooled client per worker), and answer 201 with the task. It has
no outbox, no per-user index and no read, so it is a generous baseline.

Run by the benchmark as `uvicorn app:app --workers 2` with DAPR_HTTP_ENDPOINT and JWT_SECRET set.
"""

import os
from contextlib import asynccontextmanager
import uuid
from datetime import datetime, timezone
from enum import Enum
from typing import Optional

import httpx
import jwt
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel, ConfigDict, Field, field_validator

DAPR = os.environ["DAPR_HTTP_ENDPOINT"]
SECRET = os.environ["JWT_SECRET"]

client: Optional[httpx.AsyncClient] = None


@asynccontextmanager
async def lifespan(_app: FastAPI):
    global client
    client = httpx.AsyncClient(base_url=DAPR, limits=httpx.Limits(max_keepalive_connections=64))
    yield
    await client.aclose()


app = FastAPI(lifespan=lifespan)


class Priority(str, Enum):
    low = "low"
    medium = "medium"
    high = "high"
    urgent = "urgent"


class NewTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str
    description: str = Field(default="", max_length=10_000)
    priority: Priority = Priority.medium
    due_date: Optional[datetime] = None

    @field_validator("title")
    @classmethod
    def title_length(cls, value: str) -> str:
        value = value.strip()
        if not 1 <= len(value) <= 200:
            raise ValueError("title must be 1 to 200 characters")
        return value


@app.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@app.post("/api/tasks", status_code=201)
async def create(task: NewTask, authorization: str = Header(default="")) -> dict:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(status_code=401)
    try:
        claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    except jwt.PyJWTError:
        raise HTTPException(status_code=401)
    now = datetime.now(timezone.utc).isoformat()
    task_id = str(uuid.uuid4())
    record = {
        "task_id": task_id,
        "user_id": claims["sub"],
        "user_email": claims.get("email"),
        "title": task.title,
        "description": task.description,
        "priority": task.priority.value,
        "due_date": task.due_date.isoformat() if task.due_date else None,
        "status": "open",
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    transaction = {
        "operations": [
            {
                "operation": "upsert",
                "request": {
                    "key": f"task:{task_id}",
                    "value": record,
                    "options": {"concurrency": "first-write"},
                },
            }
        ]
    }
    response = await client.post("/v1.0/state/todo-state/transaction", json=transaction)
    if response.status_code != 204:
        raise HTTPException(status_code=503)
    event = {"event_id": str(uuid.uuid4()), "event_type": "task-created", "data": {"task": record}}
    response = await client.post(
        "/v1.0/publish/todo-pubsub/task-created",
        json=event,
        params={"metadata.partitionKey": task_id},
    )
    if response.status_code != 204:
        raise HTTPException(status_code=503)
    return record
