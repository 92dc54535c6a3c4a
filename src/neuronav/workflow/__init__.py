"""What the service does with a study, independent of HTTP: receive an upload (:mod:`.uploads`),
analyse it in the background (:mod:`.jobs`, the same job code in the embedded worker and in Celery)
and keep its report versions (:mod:`.reports`). Routes call these functions and map their errors."""
