/**
 * What this agent can install: the `files` installer (content format `tar` or `raw`) on its
 * own OS and architecture. Anything else is refused with PSW_ERR_INSTALLER_UNSUPPORTED right
 * after the manifest is accepted, before a byte is downloaded.
 */
import { InstallError } from '../shared/errors.ts'
import type { FilesInstallSpecT, Manifest } from '../shared/metadata/manifest-schema.ts'

const OS: Record<string, string> = { linux: 'linux', win32: 'windows', darwin: 'darwin' }
const ARCH: Record<string, string> = { x64: 'x64', arm64: 'arm64' }

/** The manifest's files install spec; PSW_ERR_INSTALLER_UNSUPPORTED for any other installer. */
export function filesInstall(manifest: Manifest): FilesInstallSpecT {
  const { install } = manifest
  if (install.type !== 'files') {
    // dpkg (raw .deb content) arrives with a later issue.
    throw new InstallError('PSW_ERR_INSTALLER_UNSUPPORTED', `installer ${install.type} is not supported by this agent`)
  }
  return install
}

/** Refuses a manifest this endpoint cannot install: another installer, OS or architecture. */
export function checkSupported(
  manifest: Manifest,
  platform: string = process.platform,
  arch: string = process.arch,
): void {
  filesInstall(manifest)
  const wanted = manifest.patch.platform
  if ((wanted.os !== 'any' && wanted.os !== OS[platform]) || (wanted.arch !== 'any' && wanted.arch !== ARCH[arch])) {
    throw new InstallError(
      'PSW_ERR_INSTALLER_UNSUPPORTED',
      `bundle is for ${wanted.os}/${wanted.arch}, this endpoint is ${platform}/${arch}`,
    )
  }
}
