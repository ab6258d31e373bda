-- agent_control: what operators set on an agent (wisp agent cordon|label|cap) and the
-- memory it reported when it joined, which bounds what the scheduler
-- believes of it. join_mem_bytes is 0 for agents that joined before.
ALTER TABLE agents ADD COLUMN join_mem_bytes bigint NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN cordoned boolean NOT NULL DEFAULT false;
ALTER TABLE agents ADD COLUMN operator_labels text[] COLLATE "C" NOT NULL DEFAULT '{}';
ALTER TABLE agents ADD COLUMN mem_cap_bytes bigint NOT NULL DEFAULT 0;
