-- 0005: digests no agent may run because an agent died running them (poison
-- pills), until an operator releases them. No foreign key to code: the same
-- bytes uploaded again are the same poison.
CREATE TABLE quarantine (
    digest  text COLLATE "C" PRIMARY KEY,
    reason  text NOT NULL,
    agent   text COLLATE "C" NOT NULL,
    since   timestamptz NOT NULL,
    created timestamptz NOT NULL
);
