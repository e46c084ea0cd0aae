-- Argo CD health check for pipecat.daily.co/PipecatAgent.
-- Install: deploy/argocd/argocd-cm.yaml (key resource.customizations.health.pipecat.daily.co_PipecatAgent).
-- Reads what the operator writes: metadata.generation vs status.observedGeneration, and the
-- Ready and Synced conditions with their reasons (README, "Status").
--   Healthy      Ready=True and Synced=True for the current generation
--   Progressing  not yet observed, rolling out (Deploying), being deleted, or a transient
--                Pipecat Cloud / Kubernetes error the operator retries by itself
--   Suspended    Synced=False AgentExists: an agent of that name already exists in Pipecat
--                Cloud and the operator leaves it alone until `spec.adopt: true`
--   Degraded     the deployment failed (CrashLoopBackOff, ImagePullBackOff, OOMKilled, ...),
--                the credentials are missing or refused, Pipecat Cloud refuses the spec, or it
--                does not converge (NotConverging): a person has to act
local hs = {}

local function condition(status, type)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function describe(c)
  if c.message ~= nil and c.message ~= "" then
    return c.type .. "=" .. c.status .. " " .. c.reason .. ": " .. c.message
  end
  return c.type .. "=" .. c.status .. " " .. c.reason
end

-- Synced=False reasons the operator retries on its own (with backoff).
local transient = {
  PipecatUnavailable = true,
  RateLimited = true,
  SecretSetNotReady = true,
  KubernetesError = true,
  MalformedResponse = true,
}

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Being deleted (deletionPolicy " .. tostring(obj.spec and obj.spec.deletionPolicy or "Delete") .. ")"
  return hs
end

local status = obj.status
local generation = obj.metadata and obj.metadata.generation or nil
local ready = condition(status, "Ready")
local synced = condition(status, "Synced")

-- Stale: written for an older generation (the spec changed since), by the status or by a
-- condition (a pass that fails before Pipecat Cloud is reached sets only the conditions').
local function stale(observed)
  return generation ~= nil and observed ~= nil and observed < generation
end
if (ready == nil and synced == nil) or stale(status.observedGeneration)
    or (ready ~= nil and stale(ready.observedGeneration))
    or (synced ~= nil and stale(synced.observedGeneration)) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

if synced ~= nil and synced.status == "False" then
  if synced.reason == "AgentExists" then
    hs.status = "Suspended"
  elseif transient[synced.reason] then
    hs.status = "Progressing"
  else
    hs.status = "Degraded"
  end
  hs.message = describe(synced)
  return hs
end

if ready == nil or ready.status == "Unknown" then
  hs.status = "Progressing"
  hs.message = ready and describe(ready) or "Waiting for the Ready condition"
  return hs
end

if ready.status == "True" then
  if synced ~= nil and synced.status == "True" then
    hs.status = "Healthy"
  else
    hs.status = "Progressing"
  end
  hs.message = describe(ready)
  return hs
end

-- Ready=False
if ready.reason == "Deploying" or transient[ready.reason] then
  hs.status = "Progressing"
else
  hs.status = "Degraded"
end
hs.message = describe(ready)
return hs
