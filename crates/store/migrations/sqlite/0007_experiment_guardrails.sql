-- What the guardrail monitor does on an alert (JSON, `{"auto_stop": bool}`).
ALTER TABLE experiments ADD COLUMN guardrails TEXT NOT NULL DEFAULT '{}';
