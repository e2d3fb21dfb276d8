-- Graph throttling pauses shared by every appliance on this database. After a 429 with
-- Retry-After for a resource (an Outlook mailbox, the Teams service, the app), the appliance that
-- got it records until when that resource must rest; every appliance reads the live pauses and
-- holds its own requests to that key back until then, so a second appliance does not hammer Graph
-- inside the window. key '' is the whole resource.
CREATE TABLE graph_pauses (
    resource text NOT NULL,
    key      text NOT NULL DEFAULT '',
    until    timestamptz NOT NULL,
    PRIMARY KEY (resource, key)
);
CREATE INDEX graph_pauses_until ON graph_pauses (until);
