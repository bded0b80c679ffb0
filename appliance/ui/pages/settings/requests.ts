import { api } from '../../api.ts'

export const put = <T>(path: string, body: unknown) => api<T>('PUT', path, body)
export const del = (path: string) => api<void>('DELETE', path)
