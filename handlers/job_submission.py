"""Running a request as a job: answered at once (202 with its id), run on the worker's job runner, polled with
``{"status": id}`` and stopped with ``{"cancel": id}`` (see docs/serving.md). Mixed into the handler base."""

from __future__ import annotations

import abc
import dataclasses

from convlens.schema import SchemaError
from handlers import background, long_requests
from handlers.errors import Outcome, RequestError
from handlers.parsing import Job


class JobSubmission(abc.ABC):
    """Which requests run as jobs, and how; the handler provides :meth:`run_alone`."""

    endpoint: str
    runner: background.JobRunner

    @abc.abstractmethod
    def run_alone(self, job: Job) -> Outcome:
        """Answer one request on its own (the job runner's thread calls this)."""

    def must_run_as_job(self, job: Job) -> bool:
        """Whether a request runs as a job (answered at once with its id): asked for with ``"background": true``;
        an endpoint adds the requests that could outlive the response timeout (see docs/serving.md)."""
        return job.background

    def submit_if_long(self, job: Job, outcomes: list[Outcome | None]) -> bool:
        """Start ``job`` on this worker's job runner if it must run as one, answering 202 with its id."""
        try:
            if not self.must_run_as_job(job):
                return False
        except (SchemaError, RequestError) as exc:
            outcomes[job.index] = Outcome(*long_requests.refusal(exc))
            return True
        live = self.start_job(job, outcomes)
        if live is not None:
            outcomes[job.index] = Outcome(202, long_requests.accepted(live, self.endpoint))
        return True

    def start_job(self, job: Job, outcomes: list[Outcome | None], stream: bool = False,
                  request_id: str | None = None) -> background.LiveJob | None:
        """``job`` on this worker's job runner (an id made for it if it has none); None with its refusal (503
        when the runner is full, 409 when the id is taken) in ``outcomes`` if it could not start."""
        job.job_id = job.job_id or long_requests.new_job_id(self.endpoint)
        try:
            return self.runner.submit(job.job_id, self.job_work(job), stream, request_id)
        except (background.RunnerFull, background.JobConflict) as exc:
            outcomes[job.index] = Outcome(*long_requests.refusal(exc))
            return None

    def job_work(self, job: Job) -> background.Work:
        """What the job runner calls: the request run alone, its progress reported and cancellable."""
        def work(live: background.LiveJob) -> background.Answer:
            alone = dataclasses.replace(job, index=0, progress=job.progress or long_requests.reporter(live))
            outcome = self.run_alone(alone)
            return outcome.status, outcome.body
        return work
