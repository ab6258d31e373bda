-- 0007: subjects own modules. owner is the name of the subject that created
-- a module or a script; '' is the admin: the default module, what an admin
-- creates, and every row made before this migration. An activation keeps
-- the owner its module had when it was recorded, so that it stays its
-- owner's when the module is deleted and its name taken by someone else.
-- Adding a column with a constant default rewrites no row.
ALTER TABLE modules ADD COLUMN owner text COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE scripts ADD COLUMN owner text COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE activations ADD COLUMN owner text COLLATE "C" NOT NULL DEFAULT '';

-- A subject's activations, in id order, and DeleteSubject's hand-over;
-- the admin's (most rows) are listed without an owner filter. The queries
-- say owner <> '' too, so that a generic plan of a prepared statement can
-- use this partial index (checked with plan_cache_mode =
-- force_generic_plan: without it, the plan walks the primary key).
CREATE INDEX activations_owner_id ON activations (owner, id) WHERE owner <> '';
