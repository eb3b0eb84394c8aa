"""Notifications: a user's inbox, per-job notices (inbox, email, webhook), signed callbacks for services,
and alert rules; delivered by workers, so sending never blocks or fails a job."""
