"""The removal queue and its handler, which carries removals out within the 24-hour promise
(on the jobs mechanism of app/jobs/)."""
